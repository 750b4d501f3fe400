"""ovsbr: virtual switching for KVM and OpenStack compute nodes."""
