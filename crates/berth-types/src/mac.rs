//! An endpoint's MAC address: what `--mac-address` and Docker's `MacAddress` may ask for (six
//! hex pairs, unicast, not all zeros), Docker's derived one (02:42 and the IPv4 address), and
//! its text, `02:42:0a:00:00:05`, in records and on the wire.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddress([u8; 6]);

impl MacAddress {
    /// Docker's MAC for an endpoint: 02:42 followed by the four bytes of its IPv4 address.
    pub fn from_ipv4(addr: Ipv4Addr) -> Self {
        let [a, b, c, d] = addr.octets();
        Self([0x02, 0x42, a, b, c, d])
    }

    pub fn octets(self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for MacAddress {
    type Err = String;

    /// `aa:bb:cc:dd:ee:ff` (or with `-`), unicast and not all zeros.
    fn from_str(text: &str) -> Result<Self, String> {
        let malformed = || format!("invalid MAC address {text:?}: expected six hex pairs such as 02:42:0a:00:00:05");
        let mut bytes = [0u8; 6];
        let mut parts = text.split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(malformed)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| malformed())?;
        }
        if parts.next().is_some() {
            return Err(malformed());
        }
        if bytes[0] & 1 == 1 {
            return Err(format!("invalid MAC address {text}: a multicast address cannot be an endpoint's"));
        }
        if bytes == [0; 6] {
            return Err(format!("invalid MAC address {text}: all zeros"));
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl TryFrom<String> for MacAddress {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<MacAddress> for String {
    fn from(mac: MacAddress) -> Self {
        mac.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_macs_are_six_hex_pairs_unicast_and_not_zero() {
        let mac: MacAddress = "02:42:0A:00:00:05".parse().unwrap();
        assert_eq!(mac.to_string(), "02:42:0a:00:00:05");
        assert_eq!("02-42-0a-00-00-05".parse::<MacAddress>(), Ok(mac));
        assert_eq!(MacAddress::from_ipv4(Ipv4Addr::new(10, 0, 0, 5)), mac);
        for bad in ["02:42:0a:00:00", "02:42:0a:00:00:05:06", "02:42:0a:00:00:5", "zz:42:0a:00:00:05", ""] {
            assert!(bad.parse::<MacAddress>().unwrap_err().contains("six hex pairs"), "{bad}");
        }
        assert!("01:00:5e:00:00:01".parse::<MacAddress>().unwrap_err().contains("multicast"));
        assert!("00:00:00:00:00:00".parse::<MacAddress>().unwrap_err().contains("all zeros"));
    }
}
