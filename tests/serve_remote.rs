#![allow(clippy::unwrap_used)]
//! A remote namespace in `ferrite serve` (issue 7, "Attach to a guest"): `ferrite ebs-server`
//! serves a volume sealed by its client, `ferrite serve` attaches it as namespace 1, and a
//! libblkio client uses it over vhost-user-blk like a local one: data round trips on two queues,
//! discard and write-zeroes read zeroes, flush, Ctrl-C detaches, a restart serves the same data,
//! and the server's devices never hold a block in the clear.

mod support;

use blkio_client::Client;
use support::Server;
use support::ebs::{self, EbsServer};

fn config(server: &EbsServer, credential: &std::path::Path, kek: &std::path::Path) -> String {
    format!(
        "encryption = false\n[transport]\nqueues = 2\n{}",
        ebs::remote_namespace(server, "disk", credential, kek, "REMOTE-NS-1")
    )
}

#[test]
fn a_remote_volume_serves_as_a_namespace_across_a_serve_restart() {
    let dir = tempfile::tempdir().unwrap();
    let base = ebs::free_udp_ports(ebs::PATHS);
    let server = EbsServer::start(&dir.path().join("ebs"), base);
    let (credential, kek) = server.create_sealed(dir.path(), "disk", "8M");
    std::fs::write(
        dir.path().join("ferrite.toml"),
        config(&server, &credential, &kek),
    )
    .unwrap();
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 13 % 251) as u8).collect();

    let serve = Server::start(dir.path(), &[]);
    let started = serve.output();
    assert!(
        started.contains("remote volume \"disk\"") && started.contains("sealed by this client"),
        "{started}"
    );
    {
        let mut c = Client::connect(&dir.path().join("ns1.sock"), 2).unwrap();
        assert_eq!(c.capacity_bytes().unwrap(), 8 << 20);
        c.write(0, 1 << 20, &data, false).unwrap();
        c.write(1, 3 << 20, &data, true).unwrap();
        c.flush(1).unwrap();
        assert_eq!(c.read(1, 1 << 20, data.len()).unwrap(), data);
        assert_eq!(c.read(0, 3 << 20, data.len()).unwrap(), data);
        // 512-byte sectors inside a block: read-modify-write in the target, over the network.
        c.write(0, (5 << 20) + 512, &data[..1024], false).unwrap();
        let back = c.read(0, 5 << 20, 4096).unwrap();
        assert!(back[..512].iter().all(|&b| b == 0));
        assert_eq!(&back[512..1536], &data[..1024]);
        c.discard(0, 3 << 20, 64 * 1024).unwrap();
        c.write_zeroes(1, (3 << 20) + (64 << 10), 64 * 1024)
            .unwrap();
        let zeroed = c.read(0, 3 << 20, 128 * 1024).unwrap();
        assert!(
            zeroed.iter().all(|&b| b == 0),
            "discarded blocks read back data"
        );
    }
    let status = server.status();
    assert!(
        status["server"]["handshakes_confirmed"].as_u64().unwrap() >= 1,
        "{status}"
    );
    let out = serve.stop();
    assert!(out.contains("closed cleanly"), "{out}");
    // Detached at stop: the volume shows no attachment.
    let list: serde_json::Value =
        serde_json::from_str(&server.ebs(&["volume", "list", "--json"])).unwrap();
    assert_eq!(list[0]["attachments"], 0, "{list}");

    let serve = Server::start(dir.path(), &[]);
    {
        let mut c = Client::connect(&dir.path().join("ns1.sock"), 1).unwrap();
        assert_eq!(c.read(0, 1 << 20, data.len()).unwrap(), data);
        assert_eq!(
            &c.read(0, (3 << 20) + (128 << 10), data.len() - (128 << 10))
                .unwrap()[..],
            &data[128 << 10..]
        );
    }
    serve.stop();
    let ebs_data = server.data.clone();
    server.stop();
    for entry in std::fs::read_dir(ebs_data.join("devices")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(64).any(|w| w == &data[4000..4064]),
            "an ebs-server device file holds a block in the clear"
        );
    }
}

#[test]
fn after_a_crash_of_serve_the_restart_waits_for_the_volume_and_finds_the_flushed_data() {
    let dir = tempfile::tempdir().unwrap();
    let base = ebs::free_udp_ports(ebs::PATHS);
    // A short idle timeout, so the crashed client's attachment goes soon.
    let server = EbsServer::start_with(
        &dir.path().join("ebs"),
        base,
        &["--idle-timeout-ms", "1500"],
    );
    let (credential, kek) = server.create_sealed(dir.path(), "disk", "4M");
    std::fs::write(
        dir.path().join("ferrite.toml"),
        config(&server, &credential, &kek),
    )
    .unwrap();
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 29 % 247) as u8).collect();
    let serve = Server::start(dir.path(), &[]);
    {
        let mut c = Client::connect(&dir.path().join("ns1.sock"), 1).unwrap();
        c.write(0, 1 << 20, &data, false).unwrap();
        c.flush(0).unwrap();
    }
    serve.crash();
    // The volume is still attached to the dead client: the restart waits, then attaches.
    let list: serde_json::Value =
        serde_json::from_str(&server.ebs(&["volume", "list", "--json"])).unwrap();
    assert_eq!(list[0]["attachments"], 1, "{list}");
    let serve = Server::start(dir.path(), &[]);
    let log = serve.output();
    assert!(log.contains("attached by another client"), "{log}");
    {
        let mut c = Client::connect(&dir.path().join("ns1.sock"), 1).unwrap();
        assert_eq!(c.read(0, 1 << 20, data.len()).unwrap(), data);
    }
    serve.stop();
    let status = server.status();
    assert!(
        status["server"]["connections_expired"].as_u64().unwrap() >= 1,
        "{status}"
    );
    server.stop();
}
