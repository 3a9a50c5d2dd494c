

# Benchmarks measure throughput: the per-client admission limits (a flood defence) are off.
BENCH_LIMITS = {"limits.connSendRate": 0, "limits.uidSendRate": 0, "limits.httpFromUidRate": 0,
                "limits.httpTokenRate": 0, "conn.maxConnectionsPerIp": 0}
