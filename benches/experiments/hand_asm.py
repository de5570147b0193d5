#!/usr/bin/env python3
"""SHA-256 compressions in SHA-NI assembly with registers allocated by hand.

A throwaway experiment kept so that its figures can be re-run (issue 9,
docs/performance.md, "Where shani's cycles go"): can hand-written assembly beat
the compiler's `shani` loop on this CPU? It generates one function per layout, checks it against a C
reference compression, and prints core cycles per compression and the cycles per
nonce that would mean (62 `sha256rnds2` a nonce, 1.94 compressions).

    python3 benches/experiments/hand_asm.py        # needs gcc and an x86-64 CPU with
                                                   # SHA-NI and AVX-512VL

Layouts (every chain is one independent compression; states pinned in xmm1..):
- `4x4mov`: 4 chains, the message in xmm16..31 (3 words per chain), 4 moves per
  group and chain (copy two words low for `sha256msg1`, keep the newest word low
  for `sha256msg2`).
- `4x3mov`: the same, the newest word's register renamed instead of moved.
- `4x3mov-mem`: `4x3mov` with the second half of `K + W` stored and reloaded
  (`vmovq`) instead of `pshufd`.
- `4x3mov-ahead3`: `4x3mov` with each group's schedule written three groups
  before its rounds (the core picks the oldest ready instruction first).
- `3x2mov`: 3 chains, 3 of each chain's 4 words low, 2 moves per group.
- `4-rounds`: `4x3mov` without the schedule (wrong hashes: a floor, not a result).
"""
import os, subprocess, sys, tempfile

def primes(n):
    p, i = [], 2
    while len(p) < n:
        if all(i % q for q in p):
            p.append(i)
        i += 1
    return p

def frac_cbrt(p):
    n = p << 96
    r = int(round(n ** (1 / 3)))
    while r ** 3 > n:
        r -= 1
    while (r + 1) ** 3 <= n:
        r += 1
    return r & 0xFFFFFFFF

K = [frac_cbrt(p) for p in primes(64)]
x = lambda r: "%%xmm%d" % r

def generate(name, chains, low_words, rename, hi_from_memory=False, schedule=True, ahead=0):
    """Assembly of `void name(uint32_t st[chains][8], const uint32_t msg[chains][16])`,
    st in sha256rnds2's layout ([F,E,B,A], [H,G,D,C] per chain). With `ahead` (1 to
    3), each group's schedule is written that many groups before its rounds."""
    assert 0 <= ahead <= 3
    out = [".text", ".globl " + name, name + ":"]
    e = out.append
    A = [1 + 2 * c for c in range(chains)]
    C = [2 + 2 * c for c in range(chains)]
    free = list(range(2 * chains + 1, 16))   # low registers for message words
    low = [{} for _ in range(chains)]           # word group -> low register
    hi = lambda c, m: 16 + 4 * c + m % 4       # each group's copy in xmm16..31
    for c in range(chains):
        e(f"  movdqu {32*c}(%rdi), {x(A[c])}\n  movdqu {32*c+16}(%rdi), {x(C[c])}")
        for m in range(4):
            e(f"  vmovdqu32 {64*c+16*m}(%rsi), {x(hi(c, m))}")
        for m in ([0, 1, 3] if low_words == 3 else [3]):
            r = free.pop(0)
            low[c][m] = r
            e(f"  vmovdqa32 {x(hi(c, m))}, {x(r)}")

    def sched(c, n):
        if low_words == 3:
            d = low[c].pop(n - 4)                       # W[n-4] is consumed
            src1 = low[c][n - 3]
        else:
            d, s = free.pop(0), free.pop(0)
            e(f"  vmovdqa32 {x(hi(c, n-4))}, {x(d)}")
            e(f"  vmovdqa32 {x(hi(c, n-3))}, {x(s)}")
            src1 = s
        # The alignr result: a free low register, or xmm31 where every low one is
        # taken (3 chains leave xmm28..31 free; renaming makes one shared).
        t = free[0] if free else 31
        e(f"  sha256msg1 {x(src1)}, {x(d)}")
        e(f"  vpalignr $4, {x(hi(c, n-2))}, {x(low[c][n-1])}, {x(t)}")
        e(f"  vpaddd {x(t)}, {x(d)}, {x(d)}")
        e(f"  sha256msg2 {x(low[c][n-1])}, {x(d)}")
        e(f"  vmovdqa32 {x(d)}, {x(hi(c, n))}")
        old = low[c].pop(n - 1)
        if low_words == 3:
            free.append(old)
            if n + 1 < 16:                              # W[n-2] back low for msg1
                r = free.pop(0)
                low[c][n - 2] = r
                e(f"  vmovdqa32 {x(hi(c, n-2))}, {x(r)}")
        else:
            free.append(s)
            if rename:
                free.append(old)
            else:
                e(f"  vmovdqa {x(d)}, {x(old)}")
                free.append(d)
                d = old
        low[c][n] = d

    spill = 0
    def rounds(c, g):
        nonlocal spill
        # Group g's words: their copy in xmm16.. (written when they were made, not
        # overwritten before group g + 4's schedule), or still low.
        src = x(hi(c, g)) if g < 4 or not schedule or ahead else x(low[c][g])
        e(f"  vpaddd K+{16*g}(%rip), {src}, %xmm0")
        e(f"  sha256rnds2 %xmm0, {x(A[c])}, {x(C[c])}")
        if hi_from_memory:
            # Six 16-byte slots inside the 128-byte red zone below %rsp (a leaf).
            slot = -24 - 16 * (spill % 6)
            spill += 1
            e(f"  vmovdqu %xmm0, {slot}(%rsp)\n  vmovq {slot+8}(%rsp), %xmm0")
        else:
            e("  vpshufd $0x0e, %xmm0, %xmm0")
        e(f"  sha256rnds2 %xmm0, {x(C[c])}, {x(A[c])}")

    for g in range(16):
        n = g + ahead                 # the group whose schedule is written here
        if not ahead and g >= 4 and schedule:
            for c in range(chains):
                sched(c, n)
        for c in range(chains):
            rounds(c, g)
        if ahead and 4 <= n < 16 and schedule:
            for c in range(chains):
                sched(c, n)
    for c in range(chains):
        for off, r in ((32 * c, A[c]), (32 * c + 16, C[c])):
            e(f"  movdqu {off}(%rdi), %xmm0\n  paddd %xmm0, {x(r)}\n  movdqu {x(r)}, {off}(%rdi)")
    e("  ret")
    return "\n".join(out)

LAYOUTS = {
    "4x4mov": dict(chains=4, low_words=1, rename=False),
    "4x3mov": dict(chains=4, low_words=1, rename=True),
    "4x3mov-mem": dict(chains=4, low_words=1, rename=True, hi_from_memory=True),
    "4x3mov-ahead3": dict(chains=4, low_words=1, rename=True, ahead=3),
    "3x2mov": dict(chains=3, low_words=3, rename=True),
    "4-rounds": dict(chains=4, low_words=1, rename=True, schedule=False),
}

HARNESS = r"""
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <x86intrin.h>
void f(uint32_t st[][8], const uint32_t msg[][16]);
static const uint32_t K[64] = {%(K)s};
#define R(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
static void ref(uint32_t h[8], const uint32_t m[16]) {
  uint32_t w[64]; memcpy(w, m, 64);
  for (int i = 16; i < 64; i++)
    w[i] = w[i-16] + (R(w[i-15],7) ^ R(w[i-15],18) ^ (w[i-15] >> 3)) + w[i-7] + (R(w[i-2],17) ^ R(w[i-2],19) ^ (w[i-2] >> 10));
  uint32_t a=h[0],b=h[1],c=h[2],d=h[3],e=h[4],f=h[5],g=h[6],hh=h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = hh + (R(e,6)^R(e,11)^R(e,25)) + ((e&f)^(~e&g)) + K[i] + w[i];
    uint32_t t2 = (R(a,2)^R(a,13)^R(a,22)) + ((a&b)^(a&c)^(b&c));
    hh=g; g=f; f=e; e=d+t1; d=c; c=b; b=a; a=t1+t2;
  }
  h[0]+=a; h[1]+=b; h[2]+=c; h[3]+=d; h[4]+=e; h[5]+=f; h[6]+=g; h[7]+=hh;
}
static void ni(const uint32_t h[8], uint32_t o[8]) {
  uint32_t t[8] = {h[5],h[4],h[1],h[0],h[7],h[6],h[3],h[2]}; memcpy(o, t, 32);
}
static double ticks_per_cycle(void) {
  long n = 400000000; uint64_t t = __rdtsc();
  __asm__ volatile("1: add $1,%%%%rax\n add $1,%%%%rax\n add $1,%%%%rax\n add $1,%%%%rax\n sub $4,%%0\n jnz 1b" : "+r"(n) :: "rax");
  return (double)(__rdtsc() - t) / 400000000.0;
}
int main(void) {
  enum { C = %(C)d };
  uint32_t st[C][8], s0[C][8], msg[C][16], h[C][8];
  for (int c = 0; c < C; c++) {
    for (int i = 0; i < 8; i++) h[c][i] = 0x6a09e667u * (i + 1) + c;
    for (int i = 0; i < 16; i++) msg[c][i] = 0x9e3779b9u * (i + 3) ^ (c * 77);
    ni(h[c], st[c]);
  }
  memcpy(s0, st, sizeof st);
  f(st, msg);
  int ok = 1;
  for (int c = 0; c < C; c++) { uint32_t want[8]; ref(h[c], msg[c]); ni(h[c], want); ok &= !memcmp(want, st[c], 32); }
  double best = 1e30, tpc = ticks_per_cycle();
  for (int r = 0; r < 7; r++) {
    uint64_t t = __rdtsc();
    for (long i = 0; i < 200000; i++) { memcpy(st, s0, sizeof st); f(st, msg); }
    double per = (double)(__rdtsc() - t) / 200000 / tpc / C;
    if (per < best) best = per;
  }
  printf("%%d %%.1f\n", ok, best);
  return 0;
}
"""

def main():
    with tempfile.TemporaryDirectory() as d:
        print(f"{'layout':<14} {'correct':<8} {'cycles/compression':>18} {'cycles/nonce':>13}")
        for name, layout in LAYOUTS.items():
            s, c, exe = (os.path.join(d, name + ext) for ext in (".s", ".c", ""))
            body = generate("f", **layout)
            with open(s, "w") as f:
                f.write(".section .rodata\n.p2align 6\nK:\n")
                for i in range(0, 64, 4):
                    f.write("  .long " + ",".join(hex(k) for k in K[i:i + 4]) + "\n")
                f.write(body + "\n.section .note.GNU-stack,\"\",@progbits\n")
            with open(c, "w") as f:
                f.write(HARNESS % {"K": ",".join(hex(k) for k in K), "C": layout["chains"]})
            subprocess.run(["gcc", "-O2", c, s, "-o", exe], check=True)
            ok, cycles = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.split()
            correct = {"1": "yes", "0": "NO"}[ok]
            if not layout.get("schedule", True):
                correct = "(floor)"
            print(f"{name:<14} {correct:<8} {float(cycles):>18.1f} {float(cycles) * 1.94:>13.1f}")

if __name__ == "__main__":
    sys.exit(main())
