#!/bin/bash
# DevStack plugin for ovsbr: `enable_plugin ovsbr <repo> [branch]` in local.conf.
# Uses only DevStack's documented plugin functions (is_service_enabled,
# install_package, setup_develop, iniset, run_process, stop_process).
# shellcheck shell=bash

function install_ovsbr {
    if [[ "$OVSBR_DRIVER" == "openvswitch" ]]; then
        install_package openvswitch-switch
    fi
    install_package iproute2
    # libnftables: port security on Linux bridges (nftables bridge family).
    install_package nftables
    setup_develop "$OVSBR_DIR"
}

function create_ovsbr_user {
    # The agent runs as user ovsbr with CAP_NET_ADMIN only (its systemd
    # unit); group ovsbr shares the store, so the stack user joins it to
    # run the CLI without root.
    if ! getent passwd ovsbr >/dev/null; then
        sudo useradd --system --user-group --no-create-home --home-dir /var/lib/ovsbr \
            --shell /usr/sbin/nologin ovsbr
    fi
    sudo usermod -a -G ovsbr "$STACK_USER"
}

function configure_ovsbr {
    create_ovsbr_user
    sudo install -d -o "$STACK_USER" "$OVSBR_CONF_DIR"
    sudo install -d -o ovsbr -g ovsbr -m 2770 "$OVSBR_STATE_PATH"
    iniset "$OVSBR_CONF" DEFAULT driver "$OVSBR_DRIVER"
    iniset "$OVSBR_CONF" DEFAULT store "$OVSBR_STORE"
    if [[ "$OVSBR_STORE" == "etcd" ]]; then
        iniset "$OVSBR_CONF" etcd endpoints "$OVSBR_ETCD_ENDPOINTS"
    fi
    if [[ -n "$OVSBR_LOCAL_IP" ]]; then
        iniset "$OVSBR_CONF" vxlan local_ip "$OVSBR_LOCAL_IP"
    fi
    iniset "$OVSBR_CONF" DEFAULT state_path "$OVSBR_STATE_PATH"
    iniset "$OVSBR_CONF" DEFAULT debug "$OVSBR_DEBUG"
    if [[ "$OVSBR_DRIVER" == "linuxbridge" ]]; then
        iniset "$OVSBR_CONF" linux_bridge physical_interface_mappings "$OVSBR_INTERFACE_MAPPINGS"
    else
        iniset "$OVSBR_CONF" ovs integration_bridge "$OVSBR_INTEGRATION_BRIDGE"
        iniset "$OVSBR_CONF" ovs bridge_mappings "$OVSBR_BRIDGE_MAPPINGS"
        iniset "$OVSBR_CONF" ovs datapath_type "$OVSBR_DATAPATH_TYPE"
        iniset "$OVSBR_CONF" ovs ovsdb_connection "$OVSBR_OVSDB_CONNECTION"
        share_ovsdb_socket
    fi
    sudo chgrp ovsbr "$OVSBR_CONF"
    sudo chmod 0640 "$OVSBR_CONF"
}

function share_ovsdb_socket {
    # OVSDB's socket is 0750 root:root: group ovsbr gets it now and, through
    # the drop-in, after every ovsdb-server start.
    local sock=${OVSBR_OVSDB_CONNECTION#unix:}
    sudo install -D -m 0644 "$OVSBR_DIR/etc/systemd/ovsdb-server.service.d/ovsbr.conf" \
        "$OVSBR_SYSTEMD_DIR/ovsdb-server.service.d/ovsbr.conf"
    if [[ "$sock" != "$OVSBR_OVSDB_CONNECTION" && -S "$sock" ]]; then
        sudo chgrp ovsbr "$sock"
        sudo chmod 0770 "$sock"
    fi
}

function configure_ovsbr_neutron {
    # neutron-server side: the [ovsbr] group of neutron.conf names the
    # store; ML2 itself reads Q_ML2_PLUGIN_MECHANISM_DRIVERS (settings).
    iniset "$NEUTRON_CONF" ovsbr endpoints "$OVSBR_ETCD_ENDPOINTS"
    iniset "/$Q_PLUGIN_CONF_FILE" ml2 mechanism_drivers "$Q_ML2_PLUGIN_MECHANISM_DRIVERS"
}

function start_ovsbr_neutron {
    # ovsbr's status worker runs in neutron-periodic-workers; start it
    # unless DevStack already runs that service.
    if ! is_service_enabled neutron-periodic-workers; then
        run_process ovsbr-neutron-workers "$OVSBR_BIN_DIR/neutron-periodic-workers \
--config-file $NEUTRON_CONF --config-file /$Q_PLUGIN_CONF_FILE"
    fi
    # Make etcd equal to Neutron's database now (networks made before).
    "$OVSBR_BIN_DIR/ovsbr-neutron-sync" --config-file "$NEUTRON_CONF" \
        --config-file "/$Q_PLUGIN_CONF_FILE"
}

function start_ovsbr {
    # ovsbr's own hardened unit (user ovsbr, CAP_NET_ADMIN only), with a
    # drop-in for DevStack's paths; logs: journalctl -u ovsbr-agent.
    local dropin
    dropin=$(mktemp)
    printf '[Service]\nExecStart=\nExecStart=%s\nReadWritePaths=%s\n' \
        "$OVSBR_BIN_DIR/ovsbr-agent --config-file $OVSBR_CONF" "$OVSBR_STATE_PATH" > "$dropin"
    sudo install -D -m 0644 "$OVSBR_DIR/etc/systemd/ovsbr-agent.service" \
        "$OVSBR_SYSTEMD_DIR/ovsbr-agent.service"
    sudo install -D -m 0644 "$dropin" "$OVSBR_SYSTEMD_DIR/ovsbr-agent.service.d/devstack.conf"
    rm -f "$dropin"
    sudo systemctl daemon-reload
    sudo systemctl enable --now ovsbr-agent.service
}

function stop_ovsbr {
    sudo systemctl stop ovsbr-agent.service || true
    stop_process ovsbr-neutron-workers
}

function cleanup_ovsbr {
    # Remove what ovsbr created on the datapath (bridges, uplinks, patch
    # ports, its marks; never VM taps or the operator's bridges), then its
    # state and configuration.
    sudo "$OVSBR_BIN_DIR/ovsbr-agent" --config-file "$OVSBR_CONF" --cleanup || true
    sudo rm -rf "$OVSBR_STATE_PATH" "$OVSBR_CONF_DIR" "$OVSBR_SYSTEMD_DIR/ovsbr-agent.service" \
        "$OVSBR_SYSTEMD_DIR/ovsbr-agent.service.d" \
        "$OVSBR_SYSTEMD_DIR/ovsdb-server.service.d/ovsbr.conf"
}

OVSBR_BIN_DIR=${OVSBR_BIN_DIR:-$(get_python_exec_prefix)}

if is_service_enabled ovsbr-agent; then
    if [[ "${1:-}" == "stack" && "${2:-}" == "install" ]]; then
        echo_summary "Installing ovsbr"
        install_ovsbr
    elif [[ "${1:-}" == "stack" && "${2:-}" == "post-config" ]]; then
        echo_summary "Configuring ovsbr"
        configure_ovsbr
        if [[ "$OVSBR_NEUTRON" == "True" ]] && is_service_enabled q-svc neutron-api; then
            configure_ovsbr_neutron
        fi
    elif [[ "${1:-}" == "stack" && "${2:-}" == "extra" ]]; then
        echo_summary "Starting ovsbr-agent"
        start_ovsbr
        if [[ "$OVSBR_NEUTRON" == "True" ]] && is_service_enabled q-svc neutron-api; then
            start_ovsbr_neutron
        fi
    fi
    if [[ "${1:-}" == "unstack" ]]; then
        stop_ovsbr
    fi
    if [[ "${1:-}" == "clean" ]]; then
        cleanup_ovsbr
    fi
fi
