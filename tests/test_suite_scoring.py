"""The all-modality suite's scoring rules: tagged answers, modality selection and S_AMG."""
import pytest

from eval_anything.datamodel import Modality, ModelOutput, Part
from eval_anything.suite.composite import pairs_of, s_amg
from eval_anything.suite.tagged import chosen_modalities, combination, parse_tagged


def test_s_amg_two_modalities_hand_computed():
    value, parts = s_amg("ti", {"t": 0.8, "i": 0.6}, {"ti": 0.5}, {"t": 0.2, "ti": 0.4, "tia": 0.4})
    assert value == pytest.approx(0.5 * 0.4 * (0.8 + 0.6) * 0.5)  # 0.14
    assert [(p.pair, p.alpha) for p in parts] == [("ti", 0.4)]


def test_s_amg_all_three_modalities_share_alpha_in_thirds():
    value, parts = s_amg("tia", {"t": 1.0, "i": 0.5, "a": 0.2}, {"ti": 0.9, "ta": 0.4, "ia": 0.6}, {"tia": 0.3})
    assert [p.pair for p in parts] == ["ti", "ta", "ia"]
    assert all(p.alpha == pytest.approx(0.1) for p in parts)
    # 1/2 * 0.1 * ((1 + .5) * .9 + (1 + .2) * .4 + (.5 + .2) * .6) = 0.05 * 2.25
    assert value == pytest.approx(0.1125)


def test_s_amg_single_modality_and_unvoted_combination_score_zero():
    assert s_amg("t", {"t": 1.0}, {}, {"t": 1.0})[0] == 0.0
    assert s_amg("ia", {"i": 1.0, "a": 1.0}, {"ia": 1.0}, {"t": 1.0})[0] == 0.0
    assert pairs_of("ta") == ["ta"] and pairs_of("tia") == ["ti", "ta", "ia"]


@pytest.mark.parametrize("text,expected", [
    ("[[response]]: Hello\n[[image_instruction]]: a red cat\n[[audio_instruction]]: None",
     {Modality.TEXT: "Hello", Modality.IMAGE: "a red cat"}),
    ("[[RESPONSE]] hi [[audio_instruction]]: birdsong [[image_instruction]]: n/a", {Modality.TEXT: "hi", Modality.AUDIO: "birdsong"}),
    ("just text, no tags", {Modality.TEXT: "just text, no tags"}),
    ("[[response]]: None\n[[video_instruction]]: a bouncing ball", {Modality.VIDEO: "a bouncing ball"}),
    ("", {}),
])
def test_parse_tagged(text, expected):
    assert parse_tagged(text) == expected


def test_chosen_modalities_count_native_media_and_default_to_text(tmp_path):
    native = ModelOutput(text="look", parts=(Part.of_text("look"), Part.of_file(Modality.IMAGE, tmp_path / "x.png")))
    assert combination(chosen_modalities(native)) == "ti"
    assert combination(chosen_modalities(ModelOutput(text="[[response]]: None"))) == "t"
    assert combination({Modality.AUDIO, Modality.TEXT, Modality.IMAGE}) == "tia"


def test_amu_group_is_the_unweighted_mean_of_its_four_dimensions():
    import eval_anything.suite  # noqa: F401  (registers the AMU composite)
    from eval_anything.composites import group_scores

    values = {"amu_perception": 8.0, "amu_reasoning": 6.0, "amu_instruction_following": 5.0, "amu_safety": 9.0}
    outcomes = {name: {"status": "complete", "metrics": {"judge_rating": {"value": v}}} for name, v in values.items()}
    group = group_scores(outcomes)["amu"]
    assert group["value"] == 7.0 and group["status"] == "complete" and group["parts"] == values
    outcomes["amu_safety"] = {"status": "not_applicable", "reason": "no audio"}
    partial = group_scores(outcomes)["amu"]
    assert partial["value"] is None and partial["status"] == "not_applicable" and "amu_safety" in partial["reason"]
    assert group_scores({"arith_mini": {"status": "complete"}}) == {}
