-- Runs once, when the postgres volume is first created: the compose stack keeps MLflow's
-- tracking data in database "mlflow" (created by POSTGRES_DB) and the Optuna study in "optuna".
CREATE DATABASE optuna;
