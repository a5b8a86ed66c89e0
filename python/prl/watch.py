"""Following an experiment: the Watch stream as an iterator, with an optional tqdm bar."""

import grpc

from prl import v1
from prl.errors import PrlError


class ProgressBar:
    """A tqdm bar for Watch snapshots: env steps against stop.max_env_steps for TRAIN runs
    with a step limit, percent done otherwise; the state as its description and the rates,
    updates, latest evaluation return and policy version after it. The run's notes
    (Progress.message) are printed above it as they change. Owned by one watch; not
    thread-safe."""

    def __init__(self, experiment_id):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._id = experiment_id
        self._bar = None
        self._in_steps = False
        self._message = ""

    def update(self, e):
        p = e.progress
        if self._bar is None:
            target = e.spec.stop.max_env_steps
            self._in_steps = e.spec.kind == v1.ExperimentSpec.KIND_TRAIN and target > 0
            self._bar = self._tqdm(total=target if self._in_steps else 100,
                                   unit="steps" if self._in_steps else "%",
                                   desc=self._id, dynamic_ncols=True)
        if p.message and p.message != self._message:
            self._message = p.message
            self._bar.write(f"{self._id}: {p.message}")
        done = p.env_steps if self._in_steps else round(100 * min(max(p.fraction_done, 0), 1), 1)
        self._bar.n = min(done, self._bar.total)
        state = v1.ExperimentState.Name(e.state).removeprefix("EXPERIMENT_STATE_")
        self._bar.set_description(f"{self._id} {state}", refresh=False)
        evaluation = f"{p.latest_eval_return:.2f}" if p.eval_rounds > 0 else "-"
        self._bar.set_postfix_str(
            f"{p.env_steps_per_second:.0f} steps/s, {p.updates} updates, eval {evaluation}, "
            f"v{p.policy_version}", refresh=False)
        self._bar.refresh()

    def close(self):
        if self._bar is not None:
            self._bar.close()


def watch_experiment(conn, stub, request, progress, timeout):
    """The generator behind Client.watch: yields each snapshot's Experiment, raises PrlError
    when the stream fails, and cancels the call when the caller stops early."""
    call = conn.stream(stub.Watch, request, timeout)
    bar = ProgressBar(request.id) if progress else None
    try:
        for response in call:
            if bar is not None:
                bar.update(response.experiment)
            yield response.experiment
    except grpc.RpcError as e:
        raise PrlError.from_rpc_error(e, "Watch", conn.address) from None
    finally:
        call.cancel()
        if bar is not None:
            bar.close()
