"""Names that must match across modules, the registry, the blessed files and the API: one place."""

AUC = "auc"
LOGLOSS = "logloss"
ROUND = "round"  # boosting round (1-based); the time attribute ASHA prunes on

PRODUCTION_ALIAS = "production"
PRODUCTION_STAGE = "Production"
ARCHIVED_STAGE = "Archived"

MODELS_DIRNAME = "models"
BLESSED_DIRNAME = "utility_risk_model_latest"
BLESSED_MODEL_FILE = "model.xgb"
METADATA_FILE = "tuning_metadata.json"
MLFLOW_MODEL_ARTIFACT = "model"

# MLflow tags
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_TRIAL_ID = "seedcore.trial_id"
TAG_PRUNED = "seedcore.pruned"
TAG_SWEEP = "seedcore.sweep"
TAG_JOB_ID = "seedcore.job_id"
TAG_TRIGGER = "seedcore.trigger"  # what started the sweep: manual, api, schedule:<id>, monitor:<id>

# The most rows one predict or feedback request may carry (the OpenAPI bound); SEEDCORE_MAX_PREDICT_ROWS may
# lower it (413 beyond). More rows: batch_predict over a file.
MAX_REQUEST_ROWS = 10_000

# HTTP header by which `seedcore tune` tells a server it queued a sweep for a person (trigger `manual`)
TRIGGER_HEADER = "X-Seedcore-Trigger"
TAG_FINGERPRINT = "seedcore.dataset_fingerprint"
