//! What every benchmark needs around the real binaries: a staff channel with a bearer token,
//! a fixed device inventory, the process's memory and the open-file limit. Each bench compiles
//! its own copy of this module and uses only part of it.
#![allow(dead_code)]

use haven_proto::agent::v1::Inventory;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

pub fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack value we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

pub async fn staff_channel(url: &str, ca: &str) -> Channel {
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name(haven_proto::trust::CONTROLLER_TLS_NAME),
        )
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let v: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    r.metadata_mut().insert("authorization", v);
    r
}

pub fn fixed_inventory() -> Inventory {
    Inventory {
        os_name: "BenchOS".into(),
        os_version: "1".into(),
        model: "simulated".into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        storage_free_bytes: 1 << 30,
        storage_total_bytes: 1 << 32,
        ..Default::default()
    }
}
