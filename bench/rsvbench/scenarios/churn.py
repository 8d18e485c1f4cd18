"""The churn scenario: holds released as soon as they are made (churn.lua),
once on a node that keeps every ended hold (as every node did before issue
19) and once on one that forgets them after a short retention. A probe
samples the node's RSS and rsv_hold_records once a second during each run:
with forgetting both level off within the retention, without they grow
with every hold.
"""
from .. import client
from ..series import SamplingProbe, Series, add_note, notes_part

RETENTION_S = 5
# "Keeps": the longest retention the flag takes, a day: nothing ended is
# forgotten within a run.
KEEPS = ("--hold-retention-seconds", "86400")
FORGETS = ("--hold-retention-seconds", str(RETENTION_S))
CHURN_ARGS = ("{tokens}", "{event}", "{sections}")


# The soak: one run of BENCH_SOAK_DURATION (an hour by default) on a node
# with the default retention (core/limits.hpp, ended_hold_retention_ms).
SOAK_RETENTION_S = 60


def soak_series(cfg):
    return (
        Series("soak", f"(e) hold + release for {cfg.soak_duration} s, ended holds forgotten"
               f" after {SOAK_RETENTION_S} s, the default (soak scenario)", "churn.lua",
               "POST /v1/holds", args=CHURN_ARGS,
               node=("--hold-retention-seconds", str(SOAK_RETENTION_S)), probe=MemoryProbe,
               duration=cfg.soak_duration),
    )


def series():
    return (
        Series("churn-keeps", "(e) hold + release, ended holds kept (churn scenario)",
               "churn.lua", "POST /v1/holds", args=CHURN_ARGS, node=KEEPS, probe=MemoryProbe),
        Series("churn-forgets", f"(e) hold + release, ended holds forgotten after"
               f" {RETENTION_S} s (churn scenario)", "churn.lua", "POST /v1/holds",
               args=CHURN_ARGS, node=FORGETS, probe=MemoryProbe),
    )


class MemoryProbe(SamplingProbe):
    """RSS (KiB) and rsv_hold_records, once a second during each run, in
    NAME.memory.tsv; the run's extra figures and a note for the report."""

    def sample(self):
        node = self.bench.node
        records = client.value(client.metrics(node.base), "rsv_hold_records")
        return node.rss_kib(), int(records)

    def after_run(self, name, event, result):
        samples = self.stop_sampling()
        self.bench.path(f"{name}.memory.tsv").write_text(
            "seconds\trss_kib\thold_records\n"
            + "".join(f"{t:.1f}\t{rss}\t{n}\n" for t, rss, n in samples))
        if not samples:
            return {}
        half = samples[len(samples) // 2]
        last = samples[-1]
        quarters = [samples[min(len(samples) - 1, len(samples) * q // 4)][1] for q in (1, 2, 3)]
        extra = {"rss_first_kib": samples[0][1], "rss_mid_kib": half[1], "rss_last_kib": last[1],
                 "rss_max_kib": max(rss for _, rss, _ in samples),
                 "records_mid": half[2], "records_last": last[2],
                 "records_max": max(n for _, _, n in samples),
                 "releases": int(result["requests"] - result["non2xx"]) // 2}
        # Levelling off shows as the last three quarters within a few per cent.
        note = (f"{name}: RSS {extra['rss_first_kib']} -> {' -> '.join(map(str, quarters))} ->"
                f" {extra['rss_last_kib']} KiB (start, each quarter, end of the run; most"
                f" {extra['rss_max_kib']}), hold records {extra['records_mid']} ->"
                f" {extra['records_last']} (middle, end; most {extra['records_max']}), about"
                f" {extra['releases']} holds made and released")
        add_note(self.bench, "churn", note)
        return extra


def report(bench):
    return notes_part(
        bench, "churn", "Churn: memory of ended holds",
        f"Holds released at once; samples once a second in NAME.memory.tsv. Kept: the"
        f" node keeps every ended hold (--hold-retention-seconds 86400, as before issue"
        f" 19); forgotten: after {RETENTION_S} s; soak: one long run with the default"
        f" retention ({SOAK_RETENTION_S} s).")
