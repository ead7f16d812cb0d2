"""The tags on each registered model version: model_info, the champion gate and the model card read them back."""

T_HOLDOUT_AUC, T_HOLDOUT_LOGLOSS = "holdout_auc", "holdout_logloss"
T_VALID_AUC, T_VALID_LOGLOSS = "validation_auc", "validation_logloss"
T_SOURCE_RUN, T_TRIAL, T_EXPERIMENT = "source_run_id", "trial_id", "experiment_name"
T_DATA_SOURCE, T_LABEL, T_FEATURES, T_FINGERPRINT = "data_source", "label_column", "feature_names", "dataset_fingerprint"
T_PARAMS, T_TRAINED_AT, T_PROMOTED_AT = "params", "trained_at", "promoted_at"
# MLflow's UI opens an experiment of this kind on its runs (not on the GenAI traces page).
