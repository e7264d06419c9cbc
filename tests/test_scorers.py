import pytest

from eval_anything.datamodel import GenerationConfig, ModelOutput, Request, Sample, Part
from eval_anything.scorers import Attempt, build_scorer
from eval_anything.scorers.choice import extract_choice
from eval_anything.scorers.text import normalize


def sample(target=(), choices=()):
    return Sample(id="s1", input=(Part.of_text("q"),), target=target, choices=choices)


def attempt(text, choices=(), variant=0):
    request = Request(task="t", sample_id="s1", variant=variant, parts=(Part.of_text("q"),),
                      generation=GenerationConfig(), choices=choices)
    return Attempt(request, ModelOutput(text=text))


def score(name, text, args=None, **sample_fields):
    return build_scorer(name, args).score(sample(**sample_fields), [attempt(text, sample_fields.get("choices", ()))])


def test_normalize_drops_case_punctuation_and_articles():
    assert normalize("  The Cat, sat! ") == "cat sat"


@pytest.mark.parametrize("text,expected", [("Paris", 1.0), ("paris.", 1.0), ("The Paris", 1.0), ("Lyon", 0.0)])
def test_exact_match(text, expected):
    assert score("exact_match", text, target=("Paris",)).value == expected


@pytest.mark.parametrize("text,expected,answer", [
    ("7", 1.0, "7"), ("3 + 4 = 7", 1.0, "7"), ("The answer is 1,000.", 0.0, "1000"), ("-2.5", 0.0, "-2.5")])
def test_numeric_takes_the_last_number(text, expected, answer):
    result = score("numeric", text, target=("7",))
    assert (result.value, result.answer) == (expected, answer)


def test_numeric_first_position_and_tolerance():
    assert score("numeric", "3 (three, not 4)", {"position": "first"}, target=("3",)).value == 1.0
    assert score("numeric", "3.14", {"tolerance": 0.01}, target=("3.1416",)).value == 1.0
    assert score("numeric", "3.2", {"tolerance": 0.01}, target=("3.1416",)).value == 0.0


def test_numeric_without_a_number_is_an_extraction_failure_not_an_error():
    result = score("numeric", "I do not know", target=("7",))
    assert result.value == 0.0 and result.extraction_failed and result.error is None


def test_regex_extracts_group_then_matches():
    assert score("regex", "Final answer: Blue.", {"pattern": r"answer:\s*(\w+)"}, target=("blue",)).value == 1.0
    failed = score("regex", "blue", {"pattern": r"answer:\s*(\w+)"}, target=("blue",))
    assert failed.extraction_failed and failed.value == 0.0


def test_token_f1_takes_the_best_reference():
    result = score("token_f1", "the red fox jumps", target=("a red fox", "blue whale"))
    assert result.value == pytest.approx(2 * (2 / 3) * 1.0 / (2 / 3 + 1.0))


CHOICES = ("red", "green", "blue", "yellow")


@pytest.mark.parametrize("text,index", [
    ("B", 1), ("(C)", 2), ("The answer is D.", 3), ("Answer: a", 0), ("I think it is green", 1),
    ("B. green", 1), ("Hmm", None), ("red or blue", None)])
def test_extract_choice(text, index):
    assert extract_choice(text, CHOICES) == index


def test_multiple_choice_maps_letter_target_and_records_failure():
    scorer = build_scorer("multiple_choice")
    s = sample(target=("blue",), choices=CHOICES)
    assert scorer.score(s, [attempt("C", CHOICES)]).value == 1.0
    missed = scorer.score(s, [attempt("no idea", CHOICES)])
    assert missed.extraction_failed and missed.value == 0.0


def test_circular_needs_every_rotation_right():
    scorer = build_scorer("multiple_choice", {"circular": True})
    orders = scorer.choice_orders(CHOICES)
    assert len(orders) == 4 and orders[1] == ("green", "blue", "yellow", "red")
    s = sample(target=("blue",), choices=CHOICES)
    right = [attempt("ABCD"[order.index("blue")], order, v) for v, order in enumerate(orders)]
    assert scorer.score(s, right).value == 1.0
    one_wrong = right[:3] + [attempt("A", orders[3], 3)]
    result = scorer.score(s, one_wrong)
    assert result.value == 0.0 and result.explanation == "3/4 orderings answered correctly"


def test_unknown_scorer_suggests_a_near_name():
    with pytest.raises(KeyError, match="did you mean 'exact_match'"):
        build_scorer("exact_mach")


def test_bad_scorer_arguments_are_named():
    with pytest.raises(ValueError, match="bad arguments for scorer 'numeric'"):
        build_scorer("numeric", {"tolerence": 1})


def test_aggregates_and_their_standard_errors():
    from eval_anything.stats import AGGREGATES, bootstrap_stderr, mean_stderr

    values = [0.0, 1.0, 1.0, 1.0]
    statistic, stderr = AGGREGATES["mean"]
    assert statistic(values) == 0.75 and stderr(values) == pytest.approx(0.25)
    assert AGGREGATES["median"][0]([3.0, 1.0, 2.0, 10.0]) == 2.5
    # the bootstrap estimates the plug-in (population) standard error: sqrt(3/16) / 2
    assert bootstrap_stderr(values) == pytest.approx((3 / 16) ** 0.5 / 2, rel=0.1)
    assert bootstrap_stderr(values) < mean_stderr(values)
    assert bootstrap_stderr([1.0, 1.0, 1.0]) == 0.0
