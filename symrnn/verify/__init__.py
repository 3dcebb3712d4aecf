"""Verify hand-written backprop code against symrnn's exact gradients.

Three ways to plug an implementation in, for the layouts of the systems users
come from (:data:`symrnn.models.layouts.LAYOUTS`) or a declared :class:`~symrnn.models.layouts.Layout`:

* :func:`verify_loss` -- a function returning the loss and its gradients;
* :func:`verify_layer` -- a forward and a backward over a sequence (CS231n's
  ``rnn_forward``/``rnn_backward``), or :func:`verify_layer_object` for layer
  objects with ``params``/``grads`` lists (Deep Learning from Scratch 2);
* :func:`verify_step` -- one step's forward and backward;
* :func:`verify_framework` -- a PyTorch ``autograd.Function``, custom operator or module, or a JAX
  ``custom_vjp`` function (:mod:`symrnn.verify.frameworks`; torch and JAX stay optional);
* :func:`verify_seq2seq` -- an encoder-decoder's loss function (:class:`symrnn.Seq2Seq`'s
  bridges, peeky context and attention), a wrong gradient placed in the encoder, bridge,
  decoder, attention or readout;
* :func:`verify_hvp` -- a Hessian-vector (or Gauss-Newton) product of the loss
  (:mod:`symrnn.verify.second_order`).

Each returns a :class:`Verification`: ``ok``, the forward check, a table of
every gradient (user value, exact value, error, tolerance), hygiene findings
(inputs modified, nondeterminism, reused buffers), the error model used, and
``str()`` / ``to_json()``.

>>> import symrnn.verify as V
"""
from .api import verify_layer, verify_layer_object, verify_loss, verify_step
from .result import Verification
from .seq2seq import verify_seq2seq
from .captioning import verify_captioning
from .signatures import SIGNATURES, Signature
from .second_order import SecondOrderVerification, verify_hvp
from .frameworks import verify_framework

__all__ = ["verify_layer", "verify_layer_object", "verify_loss", "verify_seq2seq", "verify_captioning",
           "verify_step", "verify_framework", "Verification", "Signature", "SIGNATURES", "verify_hvp",
           "SecondOrderVerification"]
