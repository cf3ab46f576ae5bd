"""The wheel carries every module of every mapped folder (editable installs hide omissions)."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"psa": "psa", "golden": "psa/golden", "hw": "psa/hw", "sim": "psa/sim",
           "verif": "psa/verif"}


def test_wheel_contains_all_modules(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for folder, pkg in FOLDERS.items():
        for src in (ROOT / folder).rglob("*.py"):
            rel = src.relative_to(ROOT / folder)
            if folder == "psa" or "__pycache__" not in rel.parts:
                if f"{pkg}/{rel.as_posix()}" not in names:
                    missing.append(f"{folder}/{rel}")
    for toml in (ROOT / "sim").rglob("*.toml"):
        if f"psa/sim/{toml.relative_to(ROOT / 'sim').as_posix()}" not in names:
            missing.append(str(toml.relative_to(ROOT)))
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"
