//! A server of a benchmark's own: `opsbook_server::serve` on a loopback port, in this
//! process, stopped (gracefully) at the end.

use opsbook_server::Config;

pub struct Running {
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves `store` with `config` on `127.0.0.1:0`.
pub async fn start(store: impl Into<opsbook_server::Db>, config: Config) -> Running {
    let state = opsbook_server::state(store, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(opsbook_server::serve(state, listener, None, async {
        let _ = stopped.await;
    }));
    Running { url, stop, task }
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
