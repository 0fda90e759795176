# malloc_owner.py: run by tests/test_programs.c under LD_PRELOAD=libptm.so.
# For each allocation function, prints the file mapped at the address the
# dynamic linker resolves the symbol to (the global scope, as for every
# library in the process), then ptm's version string.
import ctypes
import sys

libc = ctypes.CDLL(None)
maps = []
with open("/proc/self/maps") as f:
    for line in f:
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        maps.append((lo, hi, fields[5] if len(fields) > 5 else "[anonymous]"))


def owner(name):
    try:
        fn = getattr(libc, name)
    except AttributeError:
        return "(undefined)"
    addr = ctypes.cast(fn, ctypes.c_void_p).value
    for lo, hi, path in maps:
        if lo <= addr < hi:
            return path
    return "(unmapped)"


for name in sys.argv[1:]:
    print(name, owner(name))

try:
    libc.ptm_version.restype = ctypes.c_char_p
    print("ptm_version", libc.ptm_version().decode())
except AttributeError:
    print("ptm_version (undefined)")
