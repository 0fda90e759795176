# churn.sh: bash work that allocates: arrays, associative arrays, string
# building, subshells and command substitution.  tests/test_programs.c runs
# it with and without LD_PRELOAD=libptm.so and compares the output.
set -u

# Indexed arrays: grow, slice, unset, rebuild.
declare -a arr=()
for ((i = 0; i < 8000; i++)); do
    arr+=("item-$i-$((i * 7919 % 10007))")
done
for ((i = 0; i < 8000; i += 3)); do
    unset 'arr[i]'
done
arr=("${arr[@]}")
slice=("${arr[@]:100:500}")
echo "array ${#arr[@]} ${#slice[@]} ${arr[0]} ${arr[${#arr[@]} - 1]}"

# Associative arrays.
declare -A assoc=()
for ((i = 0; i < 8000; i++)); do
    k="k$((i * 31 % 4001))"
    assoc[$k]="${assoc[$k]:-}$i,"
done
total=0
for k in "${!assoc[@]}"; do
    total=$((total + ${#assoc[$k]}))
done
echo "assoc ${#assoc[@]} $total"

# String building and parameter expansion.
s=""
for ((i = 0; i < 3000; i++)); do
    s+="<$i:${arr[i % ${#arr[@]}]}>"
done
t=${s//item/ITEM}
u=${t^^}
v=${u,,}
echo "string ${#s} ${#t} ${#u} ${#v} ${s:1000:40}"
IFS='>' read -r -a fields <<<"$s"
echo "fields ${#fields[@]} ${fields[2000]}"

# Subshells and command substitution.
sum=0
for ((i = 0; i < 20; i++)); do
    x=$(printf '%s' "${arr[@]:i:20}" | tr -d '-')
    sum=$((sum + ${#x}))
done
echo "subst $sum"
out=$( (for ((j = 0; j < 2000; j++)); do echo "row $j $((j * j % 977))"; done) | sort -k3,3n -k2,2n | tail -n 3)
echo "subshell ${out//$'\n'/ | }"
nested=$(echo "$(echo "$(($(seq 1 1000 | paste -sd+ -)))")")
echo "nested $nested"

# Functions with local arrays and recursion.
fib() {
    local n=$1
    if ((n < 2)); then echo "$n"; return; fi
    local a b
    a=$(fib $((n - 1)))
    b=$(fib $((n - 2)))
    echo $((a + b))
}
echo "fib $(fib 7)"
mapfile -t lines < <(for ((i = 0; i < 4000; i++)); do echo "line $i ${arr[i % 50]}"; done)
echo "mapfile ${#lines[@]} ${lines[3999]}"
echo done
