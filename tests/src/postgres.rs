//! A private PostgreSQL server for the tests of the PostgreSQL store: its own cluster in a
//! temporary directory, listening on a free loopback port and on a unix socket inside
//! that directory, trusting loopback connections only, stopped (fast shutdown) and
//! removed when dropped. Nothing outside the directory is touched.
//!
//! The server binaries are found on `PATH` (where Debian's `postgresql` package does not
//! put them) or under `/usr/lib/postgresql/<version>/bin` (where it does), newest version
//! first. `initdb` refuses to run as root, so under root (as CI runs) every server command
//! runs as `nobody`, with the directory handed to that user.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The superuser of the private cluster (trust authentication: no password).
pub const SUPERUSER: &str = "postgres";
/// The database created at start.
pub const DATABASE: &str = "yardmaster";
/// The unprivileged user the server runs as when the tests run as root.
const RUN_AS: &str = "nobody";

/// One running private server. Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `Some(user)` when the server commands run as that user (the tests run as root).
    run_as: Option<&'static str>,
    running: bool,
}

impl Postgres {
    /// Makes a cluster, starts it and creates [`DATABASE`]; panics with the reason (and the
    /// server's log) when it cannot.
    pub fn start() -> Postgres {
        match Postgres::try_start() {
            Ok(pg) => pg,
            Err(e) => panic!("cannot start a private PostgreSQL for this test: {e}"),
        }
    }

    /// [`Postgres::start`], returning what went wrong instead of panicking.
    pub fn try_start() -> Result<Postgres, String> {
        let bin = server_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("ym-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let run_as = running_as_root().then_some(RUN_AS);
        if let Some(user) = run_as {
            hand_over(dir.path(), user)?;
        }
        let port = free_port()?;
        let mut pg = Postgres {
            dir,
            bin,
            port,
            run_as,
            running: false,
        };
        pg.init()?;
        pg.start_server()?;
        pg.create_db(DATABASE)?;
        Ok(pg)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for [`DATABASE`] over loopback TCP.
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// The credential key the engines of a test share: any fixed key does, as long as
    /// every engine on one database is given the same one.
    pub fn credential_key() -> yardmaster::store::CredentialKey {
        yardmaster::store::CredentialKey::Hex("5e".repeat(32))
    }

    /// A connection URL for another database of this server.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates another database, so tests sharing one server do not share tables.
    pub fn create_database(&self, name: &str) {
        if let Err(e) = self.create_db(name) {
            panic!("creating database {name}: {e}");
        }
    }

    /// Stops the server (fast shutdown: open sessions are ended, committed data stays)
    /// and starts it again on the same port and data, for tests of reconnecting.
    pub fn restart(&mut self) {
        if let Err(e) = self.stop().and_then(|()| self.start_server()) {
            panic!("restarting the private PostgreSQL: {e}");
        }
    }

    /// Stops the server without removing its data; [`Postgres::restart`] or dropping it
    /// is what a test does next.
    pub fn stop(&mut self) -> Result<(), String> {
        if !self.running {
            return Ok(());
        }
        let data = self.data();
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "stop".as_ref(),
            ],
        )?;
        if !out.status.success() {
            return Err(format!("pg_ctl stop failed: {}", self.output_and_log(&out)));
        }
        self.running = false;
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn init(&self) -> Result<(), String> {
        let data = self.data();
        let out = self.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--locale=C".as_ref(),
            ],
        )?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", text(&out)));
        }
        // Loopback only (initdb's pg_hba.conf trusts local and loopback connections and
        // nothing else), the socket inside the directory, and durable commits.
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = on\nsynchronous_commit = on\nmax_connections = 100\nshared_buffers = 16MB\n",
            self.port,
            self.socket_dir().display()
        );
        let path = data.join("postgresql.conf");
        let mut current = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        current.push_str(&conf);
        std::fs::write(&path, current).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    fn start_server(&mut self) -> Result<(), String> {
        let data = self.data();
        let log = self.log();
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        )?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start failed: {}",
                self.output_and_log(&out)
            ));
        }
        self.running = true;
        // pg_ctl waits on the socket; the tests connect over TCP, so wait for that too.
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "the server does not accept connections on 127.0.0.1:{}: {}",
                    self.port,
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Creates a database with the `createdb` beside the server (over the socket in the
    /// directory), which every server package ships, unlike `psql`.
    fn create_db(&self, name: &str) -> Result<(), String> {
        let socket = self.socket_dir();
        let port = self.port.to_string();
        let out = self.run(
            "createdb",
            &[
                "-h".as_ref(),
                socket.as_os_str(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                name.as_ref(),
            ],
        )?;
        if !out.status.success() {
            return Err(format!("createdb {name} failed: {}", text(&out)));
        }
        Ok(())
    }

    /// Runs one of the server's programs, as the unprivileged user when needed.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<Output, String> {
        let path = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(&path);
                cmd
            }
            None => Command::new(&path),
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGHOST")
            .env_remove("PGPORT");
        cmd.output()
            .map_err(|e| format!("running {}: {e}", path.display()))
    }

    fn output_and_log(&self, out: &Output) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        format!("{}\nserver log:\n{log}", text(out))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("stopping the private PostgreSQL: {e}");
            // pg_ctl could not stop it: end the server we started, by its own pid.
            let pid_file = self.data().join("postmaster.pid");
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|s| s.lines().next().map(str::to_owned))
                .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()) && !pid.is_empty())
            {
                let _ = Command::new("kill").args(["-QUIT", &pid]).status();
            }
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The directory holding `initdb`, `pg_ctl`, `postgres` and `createdb`.
fn server_bin_dir() -> Result<PathBuf, String> {
    const PROGRAMS: [&str; 4] = ["initdb", "pg_ctl", "postgres", "createdb"];
    let complete = |dir: &Path| PROGRAMS.iter().all(|p| dir.join(p).is_file());
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("initdb"))
        .filter(|initdb| initdb.is_file())
        // A symlink into the versioned directory (as /usr/local/bin often holds) leads
        // to the programs beside the real one.
        .filter_map(|initdb| std::fs::canonicalize(initdb).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf));
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((version, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    on_path
        .chain(versioned.into_iter().map(|(_, dir)| dir))
        .find(|dir| complete(dir))
        .ok_or_else(|| {
            format!(
                "no PostgreSQL server programs ({}) on PATH or under /usr/lib/postgresql/*/bin; \
                 install Debian's `postgresql` package (apt-get install postgresql)",
                PROGRAMS.join(", ")
            )
        })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process just made is who it runs as.
    tempfile::tempfile()
        .and_then(|f| f.metadata())
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Gives the directory to `user`, so the server (which will not run as root) owns its
/// data.
fn hand_over(dir: &Path, user: &str) -> Result<(), String> {
    let out = Command::new("chown")
        .args(["-R", &format!("{user}:")])
        .arg(dir)
        .output()
        .map_err(|e| format!("running chown: {e}"))?;
    if !out.status.success() {
        return Err(format!("chown {user} {}: {}", dir.display(), text(&out)));
    }
    Ok(())
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free loopback port: {e}"))
}
