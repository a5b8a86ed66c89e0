// cli/plot_curves.py, compiled into prlctl (generated plot_script.cc) so `prlctl plot` needs no
// file next to the binary.
#ifndef PRL_CLI_PLOT_SCRIPT_H_
#define PRL_CLI_PLOT_SCRIPT_H_

#include "absl/strings/string_view.h"

namespace prl::cli {

absl::string_view PlotScript();

}  // namespace prl::cli

#endif  // PRL_CLI_PLOT_SCRIPT_H_
