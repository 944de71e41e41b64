//! The `harness` command's tests: the real binary on the real built drivers,
//! one test binary with a module per area (as ripgrep does), so that the
//! crates below link once.

mod common;

mod analyze;
mod bad_input;
mod debug_output;
mod driver_pe;
mod emulate_c_drivers;
mod emulate_native;
mod emulate_sample;
mod engine_gaps;
mod engines_agree;
mod faults;
mod hostile;
mod kd;
mod kd_mutation;
mod kd_scripts;
mod kd_terminal;
mod lessons;
mod machine;
mod reliability;
mod signing;
mod structure_mutation;
mod sweep;
mod vm;
mod wine;
mod wine_gaps;
mod wine_reliability;
