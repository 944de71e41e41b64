//! samplectl: installs, starts, stops and removes Sample.sys (see issue 4).

fn main() {}
