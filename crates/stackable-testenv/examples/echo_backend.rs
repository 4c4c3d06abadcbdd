//! A stand-in for a webhook replica, for the tests of `stackable_testenv::replicas`: a TCP
//! echo server that greets each connection with its name, and an HTTP health server whose
//! `/readyz` behaves as issue 9 asks of an operator (200 once started, 503 from SIGTERM on,
//! then exit after a drain period during which connections are still accepted).
//!
//! ```text
//! echo_backend --name NAME --echo 127.0.0.1:PORT --health 127.0.0.1:PORT
//!              [--ready-after-ms N] [--drain-ms N]
//! ```

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
};

struct Args {
    name: String,
    echo: SocketAddr,
    health: SocketAddr,
    ready_after: Duration,
    drain: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut name = None;
    let mut echo = None;
    let mut health = None;
    let mut ready_after = Duration::ZERO;
    let mut drain = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let addr = |v: &str| v.parse::<SocketAddr>().map_err(|e| format!("{flag}: {e}"));
        let millis = |v: &str| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--name" => name = Some(value),
            "--echo" => echo = Some(addr(&value)?),
            "--health" => health = Some(addr(&value)?),
            "--ready-after-ms" => ready_after = millis(&value)?,
            "--drain-ms" => drain = millis(&value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        name: name.ok_or("--name is required")?,
        echo: echo.ok_or("--echo is required")?,
        health: health.ok_or("--health is required")?,
        ready_after,
        drain,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let ready = Arc::new(AtomicBool::new(false));
    let echo = TcpListener::bind(args.echo).await?;
    let health = TcpListener::bind(args.health).await?;
    let name: Arc<str> = args.name.into();
    println!("{name}: echo on {}, health on {}", args.echo, args.health);

    tokio::spawn(serve_echo(echo, name.clone()));
    tokio::spawn(serve_health(health, ready.clone()));
    tokio::time::sleep(args.ready_after).await;
    ready.store(true, Ordering::SeqCst);
    println!("{name}: ready");

    sigterm.recv().await;
    ready.store(false, Ordering::SeqCst);
    println!("{name}: SIGTERM, not ready, draining for {:?}", args.drain);
    tokio::time::sleep(args.drain).await;
    println!("{name}: exiting");
    Ok(())
}

async fn serve_echo(listener: TcpListener, name: Arc<str>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(echo(stream, name.clone()));
    }
}

/// Greets with `<name>\n`, then echoes until the client closes its side.
async fn echo(mut stream: TcpStream, name: Arc<str>) -> std::io::Result<()> {
    stream.write_all(format!("{name}\n").as_bytes()).await?;
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn serve_health(listener: TcpListener, ready: Arc<AtomicBool>) {
    while let Ok((stream, _)) = listener.accept().await {
        let ready = ready.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let ready = ready.load(Ordering::SeqCst);
            async move {
                let status = match (request.uri().path(), ready) {
                    ("/readyz", true) => StatusCode::OK,
                    ("/readyz", false) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::NOT_FOUND,
                };
                let mut response =
                    Response::new(Full::new(Bytes::from(status.as_str().to_owned())));
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}
