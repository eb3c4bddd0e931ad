//! Networking: the Wi-Fi access point, the embassy-net stack on 10.0.0.1/24,
//! the DHCP server and the HTTP tasks serving the device's picoserve router.

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use alloc::string::String;
use embassy_net::{Ipv4Cidr, Runner, Stack, StaticConfigV4};
use embassy_time::{Duration, Timer};
use esp_println::println;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config, Interface, WifiController, ap::AccessPointConfig,
};

use crate::config::{AP_ADDR, AP_PREFIX};

/// The static IPv4 configuration of the AP interface.
pub fn ipv4_config() -> embassy_net::Config {
    embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(AP_ADDR, AP_PREFIX),
        gateway: Some(AP_ADDR),
        dns_servers: Default::default(),
    })
}

/// AP configuration for an SSID and an optional WPA2 passphrase (`None`:
/// open), as `device::Device::ap_password` decides.
pub fn ap_config(ssid: &str, passphrase: Option<&str>) -> Option<Config> {
    let mut ap = AccessPointConfig::default()
        .with_ssid(ssid.try_into().ok()?)
        .with_channel(1);
    if let Some(p) = passphrase {
        ap = ap.with_authentication(AuthenticationMethodConfig::Wpa2Personal(p.try_into().ok()?));
    }
    Some(Config::AccessPoint(ap))
}

/// Runs the embassy-net stack.
#[embassy_executor::task]
pub async fn net_task(mut runner: Runner<'static, Interface>) -> ! {
    runner.run().await
}

/// Keeps the AP's SSID and passphrase in step with the device (pairing
/// changes the passphrase; a settings change can switch to the legacy SSID).
#[embassy_executor::task]
pub async fn wifi_task(
    mut controller: WifiController<'static>,
    mut current: (String, Option<String>),
    dev: &'static crate::SharedDev,
) -> ! {
    loop {
        Timer::after(Duration::from_secs(3)).await;
        let next = dev.lock(|d| {
            let d = d.borrow();
            (d.ssid(), d.ap_password())
        });
        if next != current {
            // Give the HTTP answer that caused the change time to go out.
            Timer::after(Duration::from_secs(2)).await;
            match ap_config(&next.0, next.1.as_deref()) {
                Some(cfg) => match controller.set_config(&cfg) {
                    Ok(()) => {
                        println!("wifi: AP now {}", next.0);
                        current = next;
                    }
                    Err(e) => println!("wifi: reconfigure failed: {e:?}"),
                },
                None => {
                    println!("wifi: invalid SSID or passphrase, keeping the old AP");
                    current = next;
                }
            }
        }
    }
}

/// DHCP server for the AP network (leases 10.0.0.2..).
#[embassy_executor::task]
pub async fn dhcp_task(stack: Stack<'static>) -> ! {
    use edge_dhcp::io::{self, DEFAULT_SERVER_PORT};
    use edge_dhcp::server::{Server, ServerOptions};
    use edge_nal::UdpBind;
    use edge_nal_embassy::{Udp, UdpBuffers};

    let mut buf = [0u8; 1500];
    let buffers = UdpBuffers::<1, 1024, 1024, 4>::new();
    let udp = Udp::new(stack, &buffers);
    loop {
        let bind = udp
            .bind(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::UNSPECIFIED,
                DEFAULT_SERVER_PORT,
            )))
            .await;
        let mut socket = match bind {
            Ok(s) => s,
            Err(e) => {
                println!("dhcp: bind failed: {e:?}");
                Timer::after(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut server = Server::<_, 16>::new_with_et(AP_ADDR);
        // No router option: the AP is not a way to the internet, so clients
        // keep their other uplinks (phones stay on mobile data).
        let options = ServerOptions::new(AP_ADDR, None);
        if let Err(e) = io::server::run(&mut server, &options, &mut socket, &mut buf).await {
            println!("dhcp: {e:?}");
        }
        Timer::after(Duration::from_millis(500)).await;
    }
}
