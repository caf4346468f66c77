#!/usr/bin/env python3
"""Generates a large, valid orch program for the `orchc check` benchmark.

Each unit is a product with its block and enum, lifecycle steps, a chain of small steps, a
graph, a `for` and an `if`, and a workflow that composes them: about 200 lines. The default of
410 units gives about 100,000 lines, hundreds of products and blocks and about 15,000 steps.
"""
import sys

CHAIN = 30


def unit(i: int) -> str:
    out = []
    w = out.append
    w(f"/// Sites of region {i}.")
    w(f"enum Tier{i} {{ bronze, silver, gold }}")
    w("")
    w(f"block Site{i} {{")
    w("  name: Str")
    w(f"  tier: Tier{i}")
    w("  vlan: Int when provisioning | active")
    w("  address: Str when active")
    w("  note: Str?")
    w("}")
    w("")
    w(f"product SiteProduct{i} lifecycle lifecycles.Standard {{")
    w('  fixed vendor: Str = "acme"')
    w(f"  site: Site{i}")
    w("}")
    w("")
    w(f"step create{i}(customer: Str, name: Str, tier: Tier{i}) -> (site{i}: SiteProduct{i}@initial) {{")
    w(f"  {{ site{i}: SiteProduct{i}.new(customer: customer, site: {{ name: name, tier: tier }}) }}")
    w("}")
    w("")
    w(f"step provision{i}(site{i}: SiteProduct{i}@initial, vlan_base: Int) -> (site{i}: SiteProduct{i}@provisioning)")
    w("  retry 3 backoff 1s..10s")
    w("  timeout 30s")
    w(f"  compensate release{i}")
    w("{")
    w(f"  let vlan = vlan_base + {i % 4000}")
    w(f"  {{ site{i}: transition(site{i} with {{ site.vlan: vlan }}, provisioning) }}")
    w("}")
    w("")
    w(f"step release{i}(site{i}: SiteProduct{i}@provisioning) -> () {{")
    w(f'  log("releasing vlan ${{site{i}.site.vlan}}")')
    w("  {}")
    w("}")
    w("")
    w(f"step address{i}(site{i}: SiteProduct{i}@provisioning) -> (address{i}: Str) {{")
    w(f'  {{ address{i}: "10.${{site{i}.site.vlan % 250}}.{i % 250}.1" }}')
    w("}")
    w("")
    w(f"step dns{i}(address{i}: Str, name: Str) -> (record{i}: Str) {{")
    w(f'  {{ record{i}: "${{lower(name)}}.example.net A ${{address{i}}}" }}')
    w("}")
    w("")
    w(f"step activate{i}(site{i}: SiteProduct{i}@provisioning, address{i}: Str) -> (site{i}: SiteProduct{i}@active) {{")
    w(f"  {{ site{i}: transition(site{i} with {{ site.address: address{i} }}, active) }}")
    w("}")
    w("")
    for j in range(CHAIN):
        w(f"step tune{i}_{j}(score: Int, tier: Tier{i}) -> (score: Int) {{")
        w(f"  let bonus = if tier == Tier{i}.gold {{ {j + 2} }} else {{ 1 }}")
        w("  { score: (score * 3 + bonus) % 10007 }")
        w("}")
        w("")
    w(f"step probe{i}(host: Str, score: Int) -> (latency{i}: Int) {{")
    w("  let parts = split(host, \".\")")
    w("  { latency" + str(i) + ": len(parts) * 7 + score % 13 }")
    w("}")
    w("")
    w(f"step notify{i}(record{i}: Str, latency{i}: [Int]) -> (notice{i}: Str) {{")
    w(f'  let worst = for l in latency{i} if l > 20 {{ l }}')
    w(f'  {{ notice{i}: "${{record{i}}}: ${{len(worst)}} slow hosts" }}')
    w("}")
    w("")
    chain = " >>\n    ".join(f"tune{i}_{j}" for j in range(CHAIN))
    w(f"workflow deploy{i}(customer: Str, name: Str, tier: Tier{i} = gold, vlan_base: Int, score: Int, hosts: [Str])")
    w(f"  -> (site{i}: SiteProduct{i}@active, score: Int, record{i}: Str, latency{i}: [Int], notice{i}: Str?)")
    w("{")
    w(f"  create{i} >> provision{i} >>")
    w(f"    graph {{ address{i}, dns{i}, activate{i} after dns{i} }} >>")
    w(f"    {chain} >>")
    w(f"    for host in hosts limit 8 {{ probe{i} }} >>")
    w(f"    if score > 100 {{ notify{i} }}")
    w("}")
    w("")
    return "\n".join(out)


def main() -> None:
    units = int(sys.argv[1]) if len(sys.argv) > 1 else 410
    sys.stdout.write("use std.lifecycles\n\n")
    for i in range(units):
        sys.stdout.write(unit(i))
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
