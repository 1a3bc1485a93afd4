"""The MLflow side of the project: the only library package that imports :mod:`mlflow`.

One job per module, data flowing down (each imports only those listed before it):

* :mod:`router.registry.serving` — the served model's computation (input, params, routing output); no MLflow.
* :mod:`router.registry.packaging` — the pyfunc package: artifact files, the ``pool.json`` schema
  (:class:`~router.registry.packaging.ModelPool`), logging it, rebuilding a router from it.
* :mod:`router.registry.tracking` — MLflow URIs and reachability, the experiment, logging a training run.
* :mod:`router.registry.gate` — the promotion rule, pure (figures in, decision out).
* :mod:`router.registry.promotion` — versions and aliases: register, gate, promote, roll back, list, load.

The pyfunc MLflow executes (``mlflow/router_model.py``) is a thin shell over ``packaging`` and ``serving``.
"""
