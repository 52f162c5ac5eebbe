# bash completion for sluicectl (source it, or copy it to /etc/bash_completion.d/sluicectl).
# Objects and commands as bpftool: `sluicectl [--bpffs-root DIR] [-j] [-p] OBJECT COMMAND ...`.

_sluicectl_devices() {
    local d
    for d in /sys/class/net/*; do
        [[ -e $d ]] && printf '%s\n' "${d##*/}"
    done
}

_sluicectl() {
    local cur prev words=() i object="" command=""
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    COMPREPLY=()

    # The object and command typed so far (options and their values skipped).
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            --bpffs-root) ((i++)) ;;
            -*) ;;
            *)
                if [[ -z $object ]]; then
                    object=${COMP_WORDS[i]}
                elif [[ -z $command ]]; then
                    command=${COMP_WORDS[i]}
                else
                    words+=("${COMP_WORDS[i]}")
                fi
                ;;
        esac
    done

    if [[ $prev == --bpffs-root ]]; then
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        return 0
    fi
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "--bpffs-root -j --json -p --pretty -h --help" -- "$cur")
        return 0
    fi
    if [[ -z $object ]]; then
        mapfile -t COMPREPLY < <(compgen -W "service backend ct stats trace" -- "$cur")
        return 0
    fi

    case $object in
        service | backend)
            [[ -z $command ]] && mapfile -t COMPREPLY < <(compgen -W "list" -- "$cur")
            ;;
        ct)
            if [[ -z $command ]]; then
                mapfile -t COMPREPLY < <(compgen -W "list flush" -- "$cur")
            else
                case $prev in
                    address | port | service) ;;  # a value: nothing to offer
                    *) mapfile -t COMPREPLY < <(compgen -W "address port service" -- "$cur") ;;
                esac
            fi
            ;;
        trace)
            # `trace` takes no command word: what was typed after it is the packet.
            [[ -n $command ]] && words=("$command" "${words[@]}")
            case $prev in
                dev)
                    mapfile -t COMPREPLY < <(compgen -W "$(_sluicectl_devices)" -- "$cur")
                    ;;
                flags)
                    mapfile -t COMPREPLY < <(compgen -W "syn syn,ack ack fin,ack rst" -- "$cur")
                    ;;
                len | ttl | smac | dmac) ;;
                *)
                    local offer="dev flags len ttl smac dmac" w have_hook="" have_proto=""
                    for w in "${words[@]}"; do
                        case $w in
                            pod | xdp | tc-ingress | tc-egress) have_hook=1 ;;
                            tcp | udp | icmp) have_proto=1 ;;
                        esac
                    done
                    [[ -z $have_hook ]] && offer+=" pod xdp tc-ingress tc-egress"
                    [[ -z $have_proto ]] && offer+=" tcp udp icmp"
                    mapfile -t COMPREPLY < <(compgen -W "$offer" -- "$cur")
                    ;;
            esac
            ;;
    esac
    return 0
}

complete -F _sluicectl sluicectl
