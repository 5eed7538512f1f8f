//! A TCP proxy in front of a real `llama-server` that can turn hostile between requests: pass
//! bytes through, hang (take requests and never answer), or cut an answer off half-way and close.
//! It decides per request (each chunk a client sends), so kept-alive connections turn too.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

/// What the proxy does with the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Forward both ways.
    Pass = 0,
    /// Read requests, never answer, keep the connection open.
    Hang = 1,
    /// Answer with a header promising a body, send part of it, close.
    Cut = 2,
}

/// A running proxy; its threads end with the test process.
pub struct FaultProxy {
    pub port: u16,
    fault: Arc<AtomicU8>,
}

impl FaultProxy {
    /// Starts a proxy to `127.0.0.1:upstream`, passing everything through.
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port for the proxy");
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(AtomicU8::new(Fault::Pass as u8));
        let shared = fault.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let fault = shared.clone();
                std::thread::spawn(move || serve(client, upstream, &fault));
            }
        });
        FaultProxy { port, fault }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What to do from the next request on.
    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }
}

fn serve(mut client: TcpStream, upstream: u16, fault: &AtomicU8) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    // Once a connection hangs, nothing the server does may reach the client, not even a close.
    let hung = Arc::new(AtomicBool::new(false));
    {
        let (mut from, mut to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
        let hung = hung.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            if !hung.load(Ordering::SeqCst) {
                let _ = to.shutdown(Shutdown::Write);
            }
        });
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
            Ok(n) => n,
        };
        match fault.load(Ordering::SeqCst) {
            0 => {
                if server.write_all(&buf[..n]).is_err() {
                    let _ = client.shutdown(Shutdown::Both);
                    return;
                }
            }
            1 => {
                hung.store(true, Ordering::SeqCst);
                let _ = server.shutdown(Shutdown::Both);
                // Swallow whatever else comes until the client gives up.
                while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
                return;
            }
            _ => {
                let _ = client.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Content-Length: 4096\r\n\r\n{\"content\":\"The answer is",
                );
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}
