"""Installed from a wheel (not editable), mmgpt runs its quickstart and captions from an empty folder (slow).

The wheel is built offline from a copy of the tracked files and installed with ``--no-deps``
into a fresh venv that sees this environment's packages (``--system-site-packages`` plus a
``.pth`` naming this interpreter's site-packages, since the tests themselves run in a venv).
Nothing of the checkout is on the path: presets, recipes and the plan must come from the wheel.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tracked_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.mark.slow
def test_wheel_installs_and_runs_the_quickstart_from_an_empty_folder(tmp_path):
    src = tracked_copy(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                    str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("mmgpt-*.whl")
    env_dir = tmp_path / "env"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "deps-of-the-test-env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)], check=True)

    work = tmp_path / "empty"
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import mmgpt, mmgpt.resources as r; print(mmgpt.__file__); "
                            "print(r.preset('quickstart'))"], cwd=work, capture_output=True, text=True, check=True)
    assert str(ROOT) not in where.stdout and str(env_dir) in where.stdout, where.stdout  # the installed copy

    mmgpt = str(env_dir / "bin" / "mmgpt")
    run = subprocess.run([mmgpt, "quickstart", "steps_per_stage=2", "data.train=800", "data.val=120", "data.test=40",
                          "data.gen=0", "eval.limit=2", "eval.show=1", "threads=2"],
                         cwd=work, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    final = work / "runs" / "quickstart" / "final"
    assert (final / "model.safetensors").is_file() and "done in" in run.stdout
    image = next((work / "data" / "shapestones" / "media" / "test").glob("*.png"))
    cap = subprocess.run([mmgpt, "caption", str(final), "--image", str(image), "--max-new-tokens", "4"],
                         cwd=work, capture_output=True, text=True, timeout=300)
    assert cap.returncode == 0, cap.stderr[-2000:]
    line, = cap.stdout.strip().splitlines()
    assert line.startswith(f"{image}\t")
