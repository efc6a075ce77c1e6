//! The peer: nginx (Debian) as a caching reverse proxy in front of the
//! origins, configured the way a shop would use it for failover — a primary
//! and a `backup` server (or equal replicas), `proxy_next_upstream`,
//! `proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504
//! updating`, and the same 150 ms deadline as the edge. `X-Upstream` says
//! which server answered (`$upstream_addr`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx with its own prefix directory; stopped on drop.
pub struct Nginx {
    child: Child,
    /// Port it listens on.
    pub port: u16,
    prefix: PathBuf,
}

/// The nginx binary (`NGINX_BIN`, else Debian's `/usr/sbin/nginx`).
pub fn binary() -> PathBuf {
    std::env::var_os("NGINX_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

impl Nginx {
    /// Starts nginx on a free port proxying to `primary` (`127.0.0.1:port`)
    /// with a `deadline_ms` timeout.
    ///
    /// # Panics
    /// If nginx is not installed or does not answer within 10 s.
    pub async fn start(primary: &str, deadline_ms: u64) -> Nginx {
        Nginx::start_upstreams(&[(primary, "")], deadline_ms).await
    }

    /// Starts nginx with these `server` lines in its upstream: `(address,
    /// flags)`, e.g. `[("127.0.0.1:1", ""), ("127.0.0.1:2", "backup")]`.
    ///
    /// # Panics
    /// As [`Nginx::start`].
    pub async fn start_upstreams(servers: &[(&str, &str)], deadline_ms: u64) -> Nginx {
        let upstream: String = servers.iter().map(|(addr, flags)| format!("server {addr} max_fails=5 fail_timeout=30s {flags}; ")).collect();
        let port = crate::procs::free_port();
        let prefix = std::env::temp_dir().join(format!("edgerec-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(prefix.join("cache")).expect("nginx prefix");
        let conf = format!(
            r#"daemon off;
master_process off;
user root;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log crit;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {p}/body;
  proxy_temp_path {p}/proxy;
  fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi;
  scgi_temp_path {p}/scgi;
  proxy_cache_path {p}/cache levels=1:2 keys_zone=recs:10m max_size=100m inactive=1d use_temp_path=off;
  upstream origin {{ {upstream}keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    location = /healthz {{ return 200 '{{"status":"ok"}}'; }}
    location /v1/ {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout {d}ms;
      proxy_send_timeout {d}ms;
      proxy_read_timeout {d}ms;
      proxy_next_upstream error timeout http_500 http_503;
      proxy_cache recs;
      proxy_cache_valid 200 60s;
      proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504 updating;
      proxy_cache_background_update on;
      proxy_cache_lock on;
      proxy_ignore_headers Cache-Control;
      add_header X-Cache-Status $upstream_cache_status always;
      add_header X-Upstream $upstream_addr always;
    }}
  }}
}}
"#,
            p = prefix.display(),
            d = deadline_ms,
        );
        std::fs::write(prefix.join("nginx.conf"), conf).expect("write nginx.conf");
        let mut child = Command::new(binary())
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts (set-up installs Debian's nginx-light)");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(s) = child.try_wait().expect("poll nginx") {
                panic!("nginx exited: {s}; see {}/error.log", prefix.display());
            }
            if client.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "nginx did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Nginx { child, port, prefix }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

/// nginx's `X-Cache-Status` in the edge's `source` words: a cache hit is
/// `cache`, a stale answer `stale-cache`, anything fetched `origin`.
pub fn source_of(cache_status: &str) -> &'static str {
    match cache_status {
        "HIT" | "UPDATING" | "REVALIDATED" => "cache",
        "STALE" => "stale-cache",
        "" => "-",
        _ => "origin",
    }
}
