"""docs/api.md's example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


@pytest.mark.slow
def test_the_api_example_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/api.md should hold one complete example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    env = {**os.environ, "SMEARMIL_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CV balanced accuracy" in result.stdout and "ensemble of 2 fold models (16, 2)" in result.stdout
    assert (tmp_path / "api-demo" / "final" / "model.json").is_file()
