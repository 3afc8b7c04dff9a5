"""A wheel installed without -e (no repository on the path) still finds the search spaces and the registry."""
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_an_installed_wheel_resolves_a_shipped_search_space(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("rmsweep-*.whl"))
    # A fresh environment whose only rmsweep is the wheel: the test environment's packages are reachable through
    # a .pth file, which (unlike site-packages itself) does not run the editable install's own .pth.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    fresh_site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                     check=True, capture_output=True, text=True).stdout.strip())
    (fresh_site / "test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    where = subprocess.run([python, "-c", "import rmsweep; print(rmsweep.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(fresh_site)), where
    result = subprocess.run([python, "-m", "rmsweep.run", "--family", "gemma2", "--scale", "tiny", "--space",
                             "paper-bt", "--dry-run", "--storage", str(tmp_path / "runs")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"search space {fresh_site / 'rmsweep' / 'search_spaces' / 'paper-bt.yaml'}" in result.stdout
    assert not (tmp_path / "runs").exists()
    console = subprocess.run([venv / "bin" / "rmsweep", "--help"], capture_output=True, text=True, timeout=60)
    assert console.returncode == 0 and "status" in console.stdout
