"""The one loopback test: every spelling of the container itself, for the
probe conversion (destinations) and the listener check (listen addresses)."""
import ipaddress

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _netaddr

LOOPBACK = ["localhost", "LOCALHOST", "localhost.", "localhost.localdomain", "ip6-localhost", "ip6-loopback",
            "localhost4", "localhost6.localdomain6", "127.0.0.1", "127.0.0.53", "127.255.255.254", "127.1",
            "::1", "[::1]", "0:0:0:0:0:0:0:1", "0000:0000:0000:0000:0000:0000:0000:0001", "::1%lo",
            "::ffff:127.0.0.1", "[::ffff:127.0.0.1]", "::ffff:7f00:1", "0:0:0:0:0:ffff:7f00:1"]
NOT_LOOPBACK = ["", " ", "0.0.0.0", "::", "[::]", "::ffff:0.0.0.0", "10.0.0.7", "::ffff:10.0.0.7", "128.0.0.1",
                "fe80::1", "2001:db8::1", "localhost.example.com", "mylocalhost", "db", "127.0.0.1.nip.io",
                "0x7f.1.example", None, 127]
SELF_NOT_LOOPBACK = ["0.0.0.0", "::", "[::]", "0:0:0:0:0:0:0:0", "::ffff:0.0.0.0", "0"]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_spellings(host):
    assert _netaddr.is_loopback(host) is True
    assert _netaddr.is_self(host) is True


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_not_loopback(host):
    assert _netaddr.is_loopback(host) is False


@pytest.mark.parametrize("host", SELF_NOT_LOOPBACK)
def test_unspecified_destination_is_the_container_itself(host):
    assert _netaddr.is_loopback(host) is False
    assert _netaddr.is_self(host) is True


@pytest.mark.parametrize("host", ["10.0.0.7", "db", "fe80::1", "", None])
def test_other_hosts_are_not_self(host):
    assert _netaddr.is_self(host) is False


@pytest.mark.parametrize("host,literal", [("::1", "::1"), ("[::1]", "::1"), ("0:0:0:0:0:0:0:1", "::1"),
                                          ("::ffff:127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1"),
                                          ("127.0.0.2", "127.0.0.1"), ("::", "::1"), ("0.0.0.0", "127.0.0.1")])
def test_loopback_literal_keeps_the_family(host, literal):
    assert _netaddr.loopback_literal(host) == literal


@pytest.mark.parametrize("addr,loopback,unspecified", [
    ("127.0.0.1", True, False), ("::1", True, False), ("::ffff:127.0.0.9", True, False),
    ("0.0.0.0", False, True), ("::", False, True), ("::ffff:0.0.0.0", False, True), ("10.1.2.3", False, False)])
def test_address_objects(addr, loopback, unspecified):
    a = ipaddress.ip_address(addr)
    assert _netaddr.is_loopback_ip(a) is loopback
    assert _netaddr.is_unspecified_ip(a) is unspecified
