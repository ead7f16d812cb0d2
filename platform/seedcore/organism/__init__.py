"""The guide's "Cognitive Organism" as measured quantities: the energy ledger (meter and energy write it,
ledger reads it) and evolution tracking (evolution). Sits beside the job runner, below the process's services,
which build one EnergyMeter and one Evolution and hand their watchers to the runner. Performance estimated
before labels is a monitor metric (seedcore.monitoring.estimate); the memory tiers are in seedcore.memory."""
