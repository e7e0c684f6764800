"""The committed notebooks as a reader sees them: outputs free of start-up noise and temporary paths, parameters
cells holding only what each notebook uses, and the figures notebook 04 promises."""

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("0*.ipynb"))
NOISE = re.compile(r"oneDNN|absl|TqdmWarning|/tmp/|/var/folders/|site-packages")


def cells(path):
    return json.loads(path.read_text())["cells"]


def output_texts(cell):
    for output in cell.get("outputs", []):
        text = output.get("text") or output.get("data", {}).get("text/plain") or []
        yield "".join(text)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_stored_outputs_hold_no_noise_or_temporary_paths(path):
    noisy = [(index, match.group(0)) for index, cell in enumerate(cells(path)) for text in output_texts(cell)
             for match in [NOISE.search(text)] if match]
    assert not noisy, f"{path.name}: cells with start-up noise or temporary paths: {noisy}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_every_parameter_is_used_in_its_notebook(path):
    code = [cell for cell in cells(path) if cell["cell_type"] == "code"]
    parameters_cell = next(cell for cell in code if "parameters" in cell["metadata"].get("tags", []))
    names = [target.id for node in ast.parse("".join(parameters_cell["source"])).body
             for target in getattr(node, "targets", []) if isinstance(target, ast.Name)]
    rest = "\n".join("".join(cell["source"]) for cell in code if cell is not parameters_cell)
    unused = [name for name in names if not re.search(rf"\b{name}\b", rest)]
    assert names and not unused, f"{path.name}: parameters never used: {unused}"


def test_notebook_04_stores_its_diagnostic_figures():
    path = next(path for path in NOTEBOOKS if path.name.startswith("04"))
    sources = "".join("".join(cell["source"]) for cell in cells(path))
    figures = sum("image/png" in output.get("data", {}) for cell in cells(path) for output in cell.get("outputs", []))
    assert figures >= 6, f"notebook 04 stores {figures} figures"
    for name in ("validation_outcomes", "worst_validation_images", "score_by_coverage", "empty_confusion"):
        assert name in sources
