//! meridian-bpf: the XDP program (built in Rust, loaded through bpf(2)).
