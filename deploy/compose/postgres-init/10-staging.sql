-- Runs once, when the PostgreSQL volume is first created: the staging database beside
-- Dagster's (POSTGRES_DB). stagepost creates its tables on first use.
CREATE DATABASE stagepost OWNER stagepost;
