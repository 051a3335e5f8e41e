//! One integration-test binary. Every test runs the real executables: the connector and the
//! bundled fake Postmark server, on 127.0.0.1.

mod support;
mod tools;

mod check;
mod errors;
mod golden;
mod meltano;
mod metrics;
mod postgres;
mod pyairbyte;
mod read;
mod resilience;
mod singer;
mod windows;
