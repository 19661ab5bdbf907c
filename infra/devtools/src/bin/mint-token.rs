//! Mints a chat token for local testing, signed with `JWT_SECRET`.
//!
//! usage: JWT_SECRET=... mint-token <account> <app_sid> [name] [avatar-url] [ttl-seconds]
use shared::domain::auth::{mint, Claims, MIN_SECRET_BYTES};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 5 {
        eprintln!("usage: JWT_SECRET=... mint-token <account> <app_sid> [name] [avatar-url] [ttl-seconds]");
        std::process::exit(2);
    }
    let secret = std::env::var("JWT_SECRET").unwrap_or_default();
    if secret.len() < MIN_SECRET_BYTES {
        eprintln!("JWT_SECRET must be set to at least {MIN_SECRET_BYTES} bytes");
        std::process::exit(2);
    }
    let ttl: u64 = match args.get(4).map(|s| s.parse()) {
        None => 24 * 3600,
        Some(Ok(t)) => t,
        Some(Err(_)) => {
            eprintln!("ttl-seconds must be a whole number");
            std::process::exit(2);
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = Claims {
        sub: args[0].clone(),
        app: args[1].clone(),
        exp: now + ttl,
        name: args.get(2).cloned(),
        avatar: args.get(3).cloned(),
    };
    match mint(secret.as_bytes(), &claims) {
        Ok(t) => println!("{t}"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
