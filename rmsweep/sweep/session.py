"""The driver's Ray session, for every command that starts one: a token for a cluster that asks for it, Ray's own
console output kept out of rmsweep's, and one way to connect to a cluster (RAY_ADDRESS) or start a local Ray."""
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def quiet_ray() -> None:
    """Keep Ray's own console output out of rmsweep's: Tune's configuration box and result hints (its legacy
    reporter prints nothing at verbosity 0), and the raylet's warnings, which the driver prints between our lines
    ("N PYTHON worker processes have been started ..."): those go to the debug log, which --verbose shows."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray._private import worker

    print_original = worker.print_to_stdstream

    def print_unless_raylet(data, ignore_prefix):
        if data.get("pid") == "raylet":
            log.debug("raylet: %s", " ".join(data["lines"]))
        else:
            print_original(data, ignore_prefix)

    worker.print_to_stdstream = print_unless_raylet


def use_token_authentication() -> None:
    """Ray 2.60 clusters ask their clients for a token. A driver that connects to one (RAY_ADDRESS) and has a
    token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) but no RAY_AUTH_MODE would be refused. Ray
    reads the mode when it is first imported: this runs before that."""
    if not os.environ.get("RAY_ADDRESS") or "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def start_ray(verbose: bool) -> None:
    """Connect to the cluster (RAY_ADDRESS) or start a local Ray; say where its dashboard is and how to log in."""
    import ray

    if not verbose:
        quiet_ray()
    if ray.is_initialized():  # a caller (tests, a notebook) may have started Ray already
        return
    context = ray.init(address=os.environ.get("RAY_ADDRESS"), namespace="rmsweep", log_to_driver=verbose,
                       logging_level=logging.INFO if verbose else logging.ERROR)
    log.info("Ray dashboard: http://%s (if it asks for a token: `ray get-auth-token`)", context.dashboard_url)
