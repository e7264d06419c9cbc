"""Task registry: tasks declared in YAML (Jinja2 prompts) or Python, found by name or group."""
from eval_anything.tasks.catalog import ALL, Catalog, task, task_from_dict
from eval_anything.tasks.config import TaskConfig, TaskFileError
from eval_anything.tasks.dataset import DataFileError
from eval_anything.tasks.task import Task

__all__ = ["ALL", "Catalog", "DataFileError", "Task", "TaskConfig", "TaskFileError", "task", "task_from_dict"]
