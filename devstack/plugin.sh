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

function configure_ovsbr {
    sudo install -d -o "$STACK_USER" "$OVSBR_CONF_DIR"
    sudo install -d -m 0700 "$OVSBR_STATE_PATH"
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
    # netlink and the OVSDB socket need root, as for Neutron's agents.
    run_process ovsbr-agent "$OVSBR_BIN_DIR/ovsbr-agent --config-file $OVSBR_CONF" "" root
}

function stop_ovsbr {
    stop_process ovsbr-agent
    stop_process ovsbr-neutron-workers
}

function cleanup_ovsbr {
    # Remove what ovsbr created on the datapath (bridges, uplinks, patch
    # ports, its marks; never VM taps or the operator's bridges), then its
    # state and configuration.
    sudo "$OVSBR_BIN_DIR/ovsbr-agent" --config-file "$OVSBR_CONF" --cleanup || true
    sudo rm -rf "$OVSBR_STATE_PATH" "$OVSBR_CONF_DIR"
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
