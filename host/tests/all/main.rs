//! Sabot's integration tests: one binary, one module per area. Guest components are built from
//! source by `sabot-test-artifacts`.

mod alignment;
mod changelog;
mod checkpoint;
mod cli;
mod cluster;
mod container;
mod contract;
mod control_plane;
mod crash;
mod files;
mod functions;
mod golden;
mod hostile;
mod joins;
mod kafka;
mod kafka_faults;
mod kafka_records;
mod kafka_security;
mod languages;
mod native;
mod nexmark;
mod object_store;
mod sandbox;
mod scaleout;
mod serve;
mod sql;
mod state;
mod support;
mod time;
mod windows;
