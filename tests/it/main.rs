//! One integration-test binary. Every test runs the real executables: the connector and the
//! bundled fake Postmark server, on 127.0.0.1.

mod support;
mod tools;

mod account;
mod check;
mod corpus;
mod datasets;
mod errors;
mod events;
mod golden;
mod hostile;
mod hostile_http;
mod late_rows;
mod meltano;
mod metrics;
mod postgres;
mod pyairbyte;
mod read;
mod resilience;
mod secrets;
mod singer;
mod state_sanity;
mod whole_account;
mod windows;
