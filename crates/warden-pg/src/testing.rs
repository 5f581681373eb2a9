//! A throwaway PostgreSQL server for tests: a new cluster in a temporary directory, on a free
//! loopback port, with password authentication, stopped (immediately) and removed when dropped.
//! It runs the machine's own PostgreSQL binaries (Debian's `postgresql` package: `initdb`,
//! `pg_ctl` under `/usr/lib/postgresql/<version>/bin`, or `WARDEN_PG_BIN`); run as root, the
//! cluster is owned by and run as the `postgres` user, since PostgreSQL refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Database, StoreConfig};

pub struct TestServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// The superuser's password (user `warden`).
    pub password: String,
    as_postgres: bool,
    /// With [`TestServer::start_tls`]: the CA that signed the server's certificate (PEM).
    pub ca: Option<PathBuf>,
}

/// Where `initdb` and `pg_ctl` are: `WARDEN_PG_BIN`, else the newest Debian install, else PATH.
fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("WARDEN_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if let Some(dir) = found.pop() {
        return Ok(dir);
    }
    let which = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .map_err(|e| e.to_string())?;
    let path = String::from_utf8_lossy(&which.stdout).trim().to_string();
    match Path::new(&path).parent() {
        Some(p) if !path.is_empty() => Ok(p.to_path_buf()),
        _ => Err(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: \
                  apt-get install postgresql (scripts/test does it when run as root), or set \
                  WARDEN_PG_BIN to their directory"
                .into(),
        ),
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl TestServer {
    /// Creates and starts a cluster; the error says what is missing.
    pub fn start() -> Result<TestServer, String> {
        Self::start_with(false)
    }

    /// [`TestServer::start`], serving TLS with a certificate for 127.0.0.1 signed by a CA made
    /// for it (`openssl`), whose certificate is `ca`.
    pub fn start_tls() -> Result<TestServer, String> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Result<TestServer, String> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("warden-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let as_postgres = is_root();
        let password = format!("pw-{}", std::process::id());
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, &password).map_err(|e| e.to_string())?;
        // What clients read, written once: tests make databases from several threads.
        std::fs::write(dir.path().join("client-pw"), &password).map_err(|e| e.to_string())?;
        let ca = if tls {
            Some(make_certificates(dir.path())?)
        } else {
            None
        };
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("cannot give the cluster's directory to the postgres user".into());
            }
        }
        let mut server = TestServer {
            dir,
            bin,
            port: 0,
            password,
            as_postgres,
            ca,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "warden",
                "--auth=scram-sha-256",
                "--pwfile",
                &pwfile.display().to_string(),
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        server.port = free_port()?;
        server.pg_ctl_start()?;
        Ok(server)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        if self.ca.is_some() {
            let at = |f: &str| self.dir.path().join(f).display().to_string();
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                at("server.crt"),
                at("server.key")
            ));
        }
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        )
    }

    /// Stops the server at once (the database "goes away"); `restart` brings it back.
    pub fn stop(&self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
    }

    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    /// A new, empty database on this server, as `[store]` names it (the password is handed
    /// over in `password_file`, as an operator would).
    pub fn store_config(&self, database: &str) -> Result<StoreConfig, String> {
        let admin = self.config_for("postgres")?;
        let db = Database::from_config(&admin)
            .map_err(|e| e.to_string())?
            .ok_or("no url")?;
        let client = db.connect().map_err(|e| e.to_string())?;
        crate::wait(client.batch_execute(&format!("CREATE DATABASE \"{database}\"")))
            .map_err(|e| e.to_string())?;
        self.config_for(database)
    }

    fn config_for(&self, database: &str) -> Result<StoreConfig, String> {
        let file = self.dir.path().join("client-pw");
        Ok(StoreConfig {
            url: Some(format!(
                "postgres://warden@127.0.0.1:{}/{database}",
                self.port
            )),
            password_file: Some(file),
            ca_file: self.ca.clone(),
            ..StoreConfig::default()
        })
    }
}

/// A CA and a server certificate for 127.0.0.1 it signs, in `dir` (`ca.crt`, `server.crt`,
/// `server.key`); the CA's certificate's path.
fn make_certificates(dir: &Path) -> Result<PathBuf, String> {
    let openssl = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("openssl (to make the test server's certificates): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=warden test CA",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ])?;
    // PostgreSQL refuses a key others can read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(dir.join("ca.crt"))
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
