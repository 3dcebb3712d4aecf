"""The verifier's former single module, kept so that ``symrnn.verify.core.verify_layer`` and the other
names it held keep working.  The code lives along the data flow in :mod:`symrnn.verify.api` (the entry
points), :mod:`symrnn.verify.cases` (running the cases), :mod:`symrnn.verify.assess` (judging one run),
:mod:`symrnn.verify.diagnose` (naming and localising a mistake) and :mod:`symrnn.verify.replay`."""
from .api import verify_layer, verify_layer_object, verify_loss, verify_step
from .assess import assess
from .cases import Declared, run_cases, search_failure
from .diagnose import PROBE_H, explain_clipping, fingerprint, localise, message_probe
from .replay import declared_cli_command, replay_command

__all__ = ["verify_layer", "verify_layer_object", "verify_loss", "verify_step", "assess", "Declared", "run_cases",
           "search_failure", "PROBE_H", "explain_clipping", "fingerprint", "localise", "message_probe",
           "declared_cli_command", "replay_command"]
