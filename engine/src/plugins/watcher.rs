//! Hot reload: watch the plugins folder and reconcile the registry with it.
//!
//! File events are debounced (200 ms of quiet) and handled by one task, so loads never
//! race. A periodic rescan catches anything the file watcher missed.

use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::PluginHost;

const DEBOUNCE: Duration = Duration::from_millis(200);
/// Upper bound on waiting for quiet, so a folder that never stops changing still reloads.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);
const RESCAN: Duration = Duration::from_secs(10);

/// Watches the plugins folder until `shutdown` resolves. It reconciles once as soon as
/// the watch is in place, so nothing written between an earlier reconcile and the start
/// of the watch is missed.
pub async fn watch(host: PluginHost, shutdown: impl Future<Output = ()>) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let dir = host.plugins_dir().to_path_buf();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // A full channel already means "look again"; one pending wake-up is enough.
            let _ = tx.try_send(());
        }
    })
    .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "cannot watch {} ({e}); rescanning it every {}s instead",
                dir.display(),
                RESCAN.as_secs()
            );
            None
        }
    };
    tokio::pin!(shutdown);
    host.reconcile().await;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = rx.recv() => {
                let started = tokio::time::Instant::now();
                while started.elapsed() < MAX_DEBOUNCE {
                    match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                        Ok(Some(())) => continue,
                        _ => break,
                    }
                }
            }
            _ = tokio::time::sleep(RESCAN) => {}
        }
        host.reconcile().await;
    }
}
