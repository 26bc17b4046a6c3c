//! The HTTP gateway, served in this process on a real socket, connected to the test's NATS.

use jobfleet_gateway::{GatewayConfig, GatewayState};
use jobfleet_producer::{ConnectOptions, Producer};
use tokio::sync::oneshot;

pub(crate) struct Gateway {
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Gateway {
    /// Serves the gateway for the NATS server(s) at `urls` (comma-separated).
    pub(crate) async fn start(urls: &str) -> Self {
        let producer = Producer::connect(ConnectOptions::new(urls).name("fault-gateway"))
            .await
            .expect("the gateway connects");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a gateway port");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let state = GatewayState::new(producer, GatewayConfig::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(jobfleet_gateway::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Self { base, stop, served }
    }

    /// Stops it gracefully.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.served
            .await
            .expect("the gateway task")
            .expect("the gateway stops cleanly");
    }
}
