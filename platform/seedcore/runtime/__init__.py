"""What every process shares: logs, Prometheus counters, store health, server discovery."""
