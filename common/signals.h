// Termination-signal handling for server mains: block SIGINT/SIGTERM in every thread, then
// wait for one synchronously on the main thread (no async-signal-safety pitfalls).
#ifndef PRL_COMMON_SIGNALS_H_
#define PRL_COMMON_SIGNALS_H_

namespace prl {

// Blocks SIGINT and SIGTERM for the calling thread and every thread it starts afterwards.
// Call first thing in main(), before any thread exists.
void BlockTerminationSignals();

// Waits until SIGINT or SIGTERM arrives; returns the signal number. Requires
// BlockTerminationSignals() to have been called.
int WaitForTerminationSignal();

}  // namespace prl

#endif  // PRL_COMMON_SIGNALS_H_
