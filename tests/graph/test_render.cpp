// render: SVG parsed as XML, DOT, PNG, the format from the extension, and
// hostile names that must stay text everywhere.
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "graph/model.hpp"
#include "graph/render_graphviz.hpp"
#include "tests/graph/fixture_db.hpp"
#include "tests/graph/small_fleet.hpp"
#include "tests/graph/svg.hpp"

using namespace depgraph::fixture;
using nlohmann::json;

namespace {

std::vector<std::string> render_args(const std::vector<std::string>& dbs, std::vector<std::string> args) {
    args.insert(args.begin(), "render");
    for (const auto& a : db_args(dbs)) args.push_back(a);
    return args;
}

// `hosts` hosts in a ring, each calling the next `calls` on port 9000: cyclic.
void write_ring(const std::string& path, int hosts, int calls) {
    auto addr = [&](int i) { return "198.18.3." + std::to_string((i + hosts) % hosts + 1); };
    for (int i = 0; i < hosts; i++) {
        HostDb h(path, "ring-" + std::to_string(i));
        h.address(addr(i), kT0, kT0 + 60);
        for (int k = 1; k <= calls; k++) {
            h.bucket(h.edge("out", "svc" + std::to_string(i), addr(i), addr(i + k), 9000), kT0, {.connects = 1});
            h.bucket(h.edge("in", "svc" + std::to_string(i), addr(i), addr(i - k), 9000), kT0, {.accepts = 1});
        }
    }
}

}  // namespace

TEST_CASE("render svg: a well-formed document with every node's label") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    auto r = run_depgraph(render_args(dbs, {"-o", dir.file("fleet.svg")}));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto svg = parse_svg(read_file(dir.file("fleet.svg")));
    // web-01 runs two processes: a box labelled web-01 around them; other hosts have one: "host/process".
    for (const auto* label : {"web-01", "nginx", "app", ":80", ":8080", "web-02/app", "db-01/postgres", ":5432",
                              "cache-01/redis", ":6379", "batch-01/(unknown)", "203.0.113.5", "93.184.216.34",
                              "198.18.0.77",
                              "depgraph: the beginning to now, traffic seen 2025-11-26T00:00:00Z to 2025-11-26T00:01:00Z",
                              // orange, with a word on what it means: two of the 8 edges' halves disagree
                              "orange: 2 edges whose two hosts counted differently (an agent was not running, or lost "
                              "counts): the larger count is drawn"}) {
        INFO(label);
        CHECK(svg.has_text(label));
    }
    // 8 edges, few enough to carry labels with their port and count
    CHECK(svg.has_text(":5432 (10, 2 open)"));  // a pool's open connections are evidence too
    CHECK(svg.has_text(":80 (40)"));
}

TEST_CASE("render svg: failed edges red and dashed, disputed ones orange, external nodes dashed and filled") {
    TempDir dir;
    auto r = run_depgraph(render_args(write_small_fleet(dir), {"-o", "-", "--format", "svg"}));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto svg = parse_svg(r.out);
    // "fill stroke dasharray" of a node or edge's shape
    auto look = [&](const char* kind, const std::string& tooltip) {
        const auto& d = svg.find(kind, tooltip);
        return d.attribute("fill") + " " + d.attribute("stroke") + " " + d.attribute("stroke-dasharray");
    };
    CHECK(look("edge", "web-01/app -> 93.184.216.34:443, 3 connections, 1 failed") == "none red 5,2");
    CHECK(look("edge", "web-01/app -> db-01/postgres:5432, 10 connections, 0 failed, 2 open at the end") == "none black ");
    CHECK(look("edge", "web-01/app -> cache-01/redis:6379, 12 connections, 0 failed, the two hosts' counts disagree "
                       "(the larger is shown)") == "none darkorange ");
    for (const char* external : {"93.184.216.34", "203.0.113.5", "198.18.0.77"}) {
        CHECK(look("node", external) == "#fff2cc #cd6600 5,2");  // darkorange3: not a host's grey frame
    }
    CHECK(look("node", "db-01/postgres") == "lightblue black ");
    CHECK(look("node", "web-02/app") == "white black ");
    CHECK(svg.find("node", "web-02/app").attribute("stroke-width").empty());  // nothing is highlighted
}

TEST_CASE("render picks the format from the extension, or --format, and '-o -' writes to stdout") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    REQUIRE(run_depgraph(render_args(dbs, {"-o", dir.file("fleet.png")})).exit_code == 0);
    CHECK(read_file(dir.file("fleet.png")).substr(0, 8) == "\x89PNG\r\n\x1a\n");
    REQUIRE(run_depgraph(render_args(dbs, {"-o", dir.file("FLEET.PNG")})).exit_code == 0);
    CHECK(read_file(dir.file("FLEET.PNG")).substr(0, 8) == "\x89PNG\r\n\x1a\n");
    // An extension that names no format is refused before any work, and nothing is written.
    auto pdf = run_depgraph(render_args(dbs, {"-o", dir.file("fleet.pdf")}));
    CHECK(pdf.exit_code == 1);
    CHECK(pdf.err == "depgraph: error: cannot tell the format from the extension of " + dir.file("fleet.pdf") +
                         ": use .svg, .png, .dot/.gv, .json, or --format\n");
    struct stat st {};
    CHECK(stat(dir.file("fleet.pdf").c_str(), &st) != 0);
    REQUIRE(run_depgraph(render_args(dbs, {"-o", dir.file("fleet.pdf"), "--format", "png"})).exit_code == 0);
    REQUIRE(run_depgraph(render_args(dbs, {"-o", dir.file("fleet.gv")})).exit_code == 0);
    auto dot = read_file(dir.file("fleet.gv"));
    CHECK(dot.rfind("digraph depgraph {", 0) == 0);
    CHECK(dot.find("layout=dot") != std::string::npos);
    CHECK(dot.find("rankdir=LR") != std::string::npos);  // tiers left to right, clients first
    CHECK(dot.find("subgraph cluster_") != std::string::npos);
    REQUIRE(run_depgraph(render_args(dbs, {"-o", dir.file("fleet.json")})).exit_code == 0);
    CHECK(json::parse(read_file(dir.file("fleet.json")))["edges"].size() == 8);
    auto out = run_depgraph(render_args(dbs, {"-o", "-", "--format", "svg", "--layout", "neato"}));
    REQUIRE(out.exit_code == 0);
    CHECK(parse_svg(out.out).has_text("db-01/postgres"));
    auto grouped = run_depgraph(render_args(dbs, {"-o", "-", "--format", "dot", "--group-by", "role"}));
    REQUIRE(grouped.exit_code == 0);
    CHECK(grouped.out.find("web (2 hosts)") != std::string::npos);
    CHECK(grouped.out.find("cluster_") == std::string::npos);
}

TEST_CASE("hostile process and host names stay text in SVG, DOT, JSON and tables") {
    TempDir dir;
    const std::string script = "\"><script>alert(1)</script>";
    const std::string graphviz_escapes = "\\N\\G\\l{x|y}";
    const std::string cut_utf8 = "caf\xc3";  // comm cut in the middle of 'é'
    const std::string host = "<b>h&st</b>";
    // prctl(PR_SET_NAME) takes any bytes: XML 1.0 cannot carry these at all.
    const std::string controls = std::string("bell\x01\x1b[31m") + '\x7f';
    {
        HostDb h(dir.file("evil.db"), host);
        h.address("198.18.2.1", kT0, kT0 + 60);
        h.bucket(h.edge("out", script, "198.18.2.1", "198.18.2.2", 80), kT0, {.connects = 1});
        h.bucket(h.edge("in", graphviz_escapes, "198.18.2.1", "198.18.2.3", 81), kT0, {.accepts = 1});
        h.bucket(h.edge("in", cut_utf8, "198.18.2.1", "198.18.2.4", 82), kT0, {.accepts = 1});
        h.bucket(h.edge("in", controls, "198.18.2.1", "198.18.2.5", 83), kT0, {.accepts = 1});
    }
    std::vector<std::string> dbs{dir.file("evil.db")};

    auto svg_run = run_depgraph(render_args(dbs, {"-o", "-", "--format", "svg"}));
    REQUIRE(svg_run.exit_code == 0);
    auto svg = parse_svg(svg_run.out);
    CHECK(svg.has_text(script));
    CHECK(svg.has_text(graphviz_escapes));
    CHECK(svg.has_text(host));
    CHECK(svg.has_text("caf\xef\xbf\xbd"));
    CHECK(svg.has_text("bell\xef\xbf\xbd\xef\xbf\xbd[31m\xef\xbf\xbd"));
    // and the impact subgraph, whose title also carries the target as typed
    auto impact_svg = run_depgraph({"impact", host + "/" + controls, "--since", "2025-01-01", "--format", "svg",
                                    "--db", dbs[0]});
    REQUIRE(impact_svg.exit_code == 0);
    CHECK(parse_svg(impact_svg.out).has_text(host + "/bell\xef\xbf\xbd\xef\xbf\xbd[31m\xef\xbf\xbd"));
    CHECK(std::count(svg.elements.begin(), svg.elements.end(), "script") == 0);
    CHECK(std::count(svg.elements.begin(), svg.elements.end(), "b") == 0);

    auto dot = run_depgraph(render_args(dbs, {"-o", "-", "--format", "dot"}));
    REQUIRE(dot.exit_code == 0);
    CHECK(dot.out.find("label=\"\\\"><script>alert(1)</script>\"") != std::string::npos);
    CHECK(dot.out.find("label=\"\\\\N\\\\G\\\\l{x|y}\\n:81\"") != std::string::npos);
    CHECK(dot.out.find("label=\"bell\xef\xbf\xbd\xef\xbf\xbd[31m\xef\xbf\xbd\\n:83\"") != std::string::npos);
    CHECK(dot.out.find_first_of(std::string("\x01\x1b\x7f")) == std::string::npos);

    auto js = run_depgraph(render_args(dbs, {"-o", "-", "--format", "json"}));
    REQUIRE(js.exit_code == 0);
    auto g = js.json();
    CHECK(find_node(g, host + "/" + script)["process"] == script);
    CHECK(find_node(g, host + "/" + graphviz_escapes)["process"] == graphviz_escapes);
    CHECK(find_node(g, host + "/caf\xef\xbf\xbd")["host"] == host);
    CHECK(find_node(g, host + "/" + controls)["process"] == controls);  // JSON escapes what it must, itself

    auto table = run_depgraph({"impact", host, "--since", "2025-01-01", "--db", dbs[0]});
    REQUIRE(table.exit_code == 0);
    CHECK(table.out.find("\\\\N\\\\G") != std::string::npos);
    CHECK(table.out.find("caf\\xc3") != std::string::npos);
    CHECK(table.out.find(host + "/bell\\x01\\x1b[31m\\x7f ") != std::string::npos);
    CHECK(table.out.find_first_of(std::string("\x01\x1b\x7f")) == std::string::npos);
}

TEST_CASE("names that look like entity references show as written, in SVG and in DOT drawn by dot") {
    TempDir dir;
    // Each would show as another name if Graphviz read its references: db-01, postgres, <b>, &.
    const std::string host = "db&#45;01";
    const std::string lookalike = "&#112;ostgres";
    const std::string tag = "&lt;b&gt;";
    const std::string escaped_amp = "&amp;";
    auto path = dir.file("lookalike.db");
    {
        HostDb web(path, "web-01");
        web.address("198.18.6.1", kT0, kT0 + 60);
        HostDb db(path, host);
        db.address("198.18.6.2", kT0, kT0 + 60);
        int port = 80;
        for (const auto& process : {lookalike, tag, escaped_amp}) {
            web.bucket(web.edge("out", "curl", "198.18.6.1", "198.18.6.2", port), kT0, {.connects = 1});
            db.bucket(db.edge("in", process, "198.18.6.2", "198.18.6.1", port), kT0, {.accepts = 1});
            port++;
        }
    }
    // The host runs three processes: a box labelled with the host around them, each node labelled with its process.
    auto check_labels = [&](const Svg& svg) {
        for (const auto& label : {host, lookalike, tag, escaped_amp}) {
            INFO(label);
            CHECK(svg.has_text(label));
        }
        for (const auto* shown_as : {"db-01", "postgres", "<b>", "&"}) {
            INFO(shown_as);
            CHECK_FALSE(svg.has_text(shown_as));
        }
    };
    auto svg_run = run_depgraph({"render", "--db", path, "-o", "-", "--format", "svg"});
    REQUIRE(svg_run.exit_code == 0);
    auto svg = parse_svg(svg_run.out);
    check_labels(svg);
    CHECK(svg.has_tooltip(host + "/" + lookalike));
    CHECK(svg.has_tooltip("web-01/curl -> " + host + "/" + tag + ":81, 1 connections, 0 failed"));

    auto dot_run = run_depgraph({"render", "--db", path, "-o", dir.file("lookalike.dot")});
    REQUIRE(dot_run.exit_code == 0);
    REQUIRE(std::system(("dot -Tsvg " + shell_quote(dir.file("lookalike.dot")) + " -o " +
                         shell_quote(dir.file("by-dot.svg"))).c_str()) == 0);
    check_labels(parse_svg(read_file(dir.file("by-dot.svg"))));

    // the impact subgraph's title carries the target as typed
    auto target = host + "/" + lookalike;
    auto impact = run_depgraph({"impact", target, "--since", "2025-01-01", "--format", "svg", "--db", path});
    REQUIRE(impact.exit_code == 0);
    auto titled = parse_svg(impact.out);
    CHECK(std::any_of(titled.texts.begin(), titled.texts.end(), [&](const std::string& t) {
        return t.rfind("depgraph impact of " + target + ": ", 0) == 0;
    }));
}

TEST_CASE("the engine follows the graph's shape; big graphs lose their edge labels") {
    TempDir dir;
    write_ring(dir.file("ring.db"), 30, 7);  // cyclic, 210 edges
    auto dot = run_depgraph({"render", "--db", dir.file("ring.db"), "-o", "-", "--format", "dot"});
    REQUIRE(dot.exit_code == 0);
    CHECK(dot.out.find("layout=sfdp") != std::string::npos);
    CHECK(dot.out.find(":9000 (") == std::string::npos);
    CHECK(run_depgraph({"render", "--db", dir.file("ring.db"), "-o", "-", "--format", "json"}).json()["edges"].size() ==
          210);
    auto svg = run_depgraph({"render", "--db", dir.file("ring.db"), "-o", "-", "--format", "svg"});
    REQUIRE(svg.exit_code == 0);
    CHECK(parse_svg(svg.out).has_text("ring-0/svc0"));
}

TEST_CASE("a layout that outlives its time limit is stopped and reported in one line") {
    TempDir dir;
    // dot on 60 hosts each calling the next 10 needs about 14 s of CPU
    write_ring(dir.file("ring.db"), 60, 10);
    auto r = run_depgraph({"render", "--db", dir.file("ring.db"), "-o", dir.file("ring.svg"), "--layout", "dot",
                           "--layout-timeout", "1"});
    CHECK(r.exit_code == 1);
    CHECK(r.err == "depgraph: error: the layout with dot did not finish within 1 s: try --layout sfdp, "
                   "--group-by role or --min-connections\n");
    CHECK(r.out.empty());
    struct stat st {};
    CHECK(stat(dir.file("ring.svg").c_str(), &st) != 0);
}

TEST_CASE("a client that calls one service on two ports draws two edges, one per port") {
    TempDir dir;
    auto path = dir.file("two-ports.db");
    {
        HostDb shop(path, "shop-01");
        shop.address("198.18.4.1", kT0, kT0 + 60);
        shop.bucket(shop.edge("out", "checkout", "198.18.4.1", "198.18.4.2", 80), kT0, {.connects = 3});
        shop.bucket(shop.edge("out", "checkout", "198.18.4.1", "198.18.4.2", 443), kT0, {.connects = 5, .failed = 1});
    }
    {
        HostDb web(path, "web-01");
        web.address("198.18.4.2", kT0, kT0 + 60);
        web.bucket(web.edge("in", "nginx", "198.18.4.2", "198.18.4.1", 80), kT0, {.accepts = 3});
        web.bucket(web.edge("in", "nginx", "198.18.4.2", "198.18.4.1", 443), kT0, {.accepts = 4});
    }
    CHECK(run_depgraph({"render", "--db", path, "-o", "-", "--format", "json"}).json()["edges"].size() == 2);
    auto svg = run_depgraph({"render", "--db", path, "-o", "-", "--format", "svg"});
    REQUIRE(svg.exit_code == 0);
    const std::string edge_group = "class=\"edge\"";  // Graphviz's <g> of one drawn edge
    size_t drawn = 0;
    for (size_t at = svg.out.find(edge_group); at != std::string::npos; at = svg.out.find(edge_group, at + 1)) drawn++;
    CHECK(drawn == 2);
    auto texts = parse_svg(svg.out);
    CHECK(texts.has_text(":80 (3)"));
    CHECK(texts.has_text(":443 (5, 1 failed)"));
}

TEST_CASE("a failed edge's label counts its failures, in red, and the edge is drawn over the others") {
    TempDir dir;
    auto r = run_depgraph(render_args(write_small_fleet(dir), {"-o", "-", "--format", "svg"}));
    REQUIRE(r.exit_code == 0);
    auto svg = parse_svg(r.out);
    const auto& external = svg.find("edge", "web-01/app -> 93.184.216.34:443, 3 connections, 1 failed");
    CHECK(external.texts == std::vector<std::string>{":443 (3, 1 failed)"});
    CHECK(external.text_fill == "red");
    const auto& db = svg.find("edge", "web-02/app -> db-01/postgres:5432, 6 connections, 2 failed");
    CHECK(db.texts == std::vector<std::string>{":5432 (6, 2 failed)"});
    CHECK(db.text_fill == "red");
    const auto& ok = svg.find("edge", "web-01/app -> db-01/postgres:5432, 10 connections, 0 failed, 2 open at the end");
    CHECK(ok.texts == std::vector<std::string>{":5432 (10, 2 open)"});
    CHECK(ok.text_fill.empty());
    // Graphviz paints edges in the order they come: those of the two clients with failed edges last, so no
    // other client's edge covers a red one; and the thinner red one (4 attempts, where the graph's edges run
    // from 1 to 40) still wide.
    std::vector<std::string> edges;
    for (const auto& d : svg.drawn) {
        if (d.kind == "edge") edges.push_back(d.tooltip);
    }
    REQUIRE(edges.size() == 8);
    for (size_t i = 0; i < edges.size(); i++) {
        INFO(edges[i]);
        bool failing_client = edges[i].rfind("web-01/app -> ", 0) == 0 || edges[i].rfind("web-02/app -> ", 0) == 0;
        CHECK(failing_client == (i >= 4));
    }
    CHECK(external.attribute("stroke-width") == "2.5");
}

TEST_CASE("edge widths run from the graph's quietest edge to its busiest; crowded edges are translucent") {
    TempDir dir;
    auto r = run_depgraph(render_args(write_small_fleet(dir), {"-o", "-", "--format", "svg"}));
    REQUIRE(r.exit_code == 0);
    auto svg = parse_svg(r.out);
    auto width = [&](const std::string& tooltip) { return svg.find("edge", tooltip).attribute("stroke-width"); };
    CHECK(width("198.18.0.77 -> cache-01/redis:6379, 1 connections, 0 failed") == "0.5");  // the quietest
    CHECK(width("203.0.113.5 -> web-01/nginx:80, 40 connections, 0 failed") == "4");      // the busiest
    // 0.5 + 3.5 * (log 11 - log 2) / (log 41 - log 2)
    CHECK(width("web-01/app -> db-01/postgres:5432, 10 connections, 0 failed, 2 open at the end") == "2.48");
    // a graph too big for edge labels: its edges half transparent
    write_ring(dir.file("ring.db"), 30, 7);
    auto ring = run_depgraph({"render", "--db", dir.file("ring.db"), "-o", "-", "--format", "svg"});
    REQUIRE(ring.exit_code == 0);
    auto crowded = parse_svg(ring.out);
    const auto& edge = crowded.find("edge", "ring-0/svc0 -> ring-1/svc1:9000, 1 connections, 0 failed");
    CHECK(edge.attribute("stroke") == "#1f3b60");
    CHECK(edge.attribute("stroke-opacity") == "0.501961");
}

TEST_CASE("host boxes only under dot: sfdp and neato label every node with its host") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    for (const char* engine : {"sfdp", "neato"}) {
        INFO(engine);
        auto r = run_depgraph(render_args(dbs, {"-o", "-", "--format", "svg", "--layout", engine}));
        REQUIRE(r.exit_code == 0);
        CHECK(r.out.find("class=\"cluster\"") == std::string::npos);
        auto svg = parse_svg(r.out);
        // web-01's two processes, which dot draws as "nginx" and "app" in a box labelled web-01
        CHECK(svg.has_text("web-01/nginx"));
        CHECK(svg.has_text("web-01/app"));
        CHECK_FALSE(svg.has_text("nginx"));
        CHECK_FALSE(svg.has_text("web-01"));
    }
    auto dot = run_depgraph(render_args(dbs, {"-o", "-", "--format", "dot", "--layout", "sfdp"}));
    REQUIRE(dot.exit_code == 0);
    CHECK(dot.out.find("cluster_") == std::string::npos);
}

TEST_CASE("the impact target keeps its own look: an external one stays dashed") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    std::vector<std::string> impact{"impact", "93.184.216.34:443", "--since", "2025-01-01", "--format", "svg"};
    for (const auto& a : db_args(dbs)) impact.push_back(a);
    auto r = run_depgraph(impact);
    REQUIRE(r.exit_code == 0);
    auto svg = parse_svg(r.out);
    const auto& target = svg.find("node", "93.184.216.34");
    CHECK(target.attribute("fill") == "gold");
    CHECK(target.attribute("stroke-width") == "3");
    CHECK(target.attribute("stroke-dasharray") == "5,2");
}

TEST_CASE("the title names the filters, so a filtered picture does not pass for the whole fleet") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    auto r = run_depgraph(render_args(dbs, {"-o", "-", "--format", "svg", "--exclude", "batch-*", "--no-external",
                                            "--min-connections", "5"}));
    REQUIRE(r.exit_code == 0);
    CHECK(parse_svg(r.out).has_text(
        "depgraph: the beginning to now, traffic seen 2025-11-26T00:00:00Z to 2025-11-26T00:01:00Z (--exclude batch-*, "
        "--no-external, --min-connections 5)"));
    std::vector<std::string> impact{"impact", "cache-01", "--since", "2025-01-01", "--format", "svg",
                                    "--min-connections", "5"};
    for (const auto& a : db_args(dbs)) impact.push_back(a);
    auto walked = run_depgraph(impact);
    REQUIRE(walked.exit_code == 0);
    CHECK(parse_svg(walked.out).has_text("depgraph impact of cache-01: 2025-01-01T00:00:00Z to now (--min-connections 5)"));
}

namespace {

// `tiers` tiers of `width` nodes, each node calling every node of the next tier: layered.
depgraph::Graph layered(int tiers, int width) {
    depgraph::Graph g;
    auto id = [](int tier, int i) { return "h" + std::to_string(tier) + "-" + std::to_string(i) + "/p"; };
    for (int t = 0; t + 1 < tiers; t++) {
        for (int i = 0; i < width; i++) {
            for (int j = 0; j < width; j++) {
                auto from = g.node(id(t, i), depgraph::NodeKind::client, id(t, i), "p");
                auto to = g.node(id(t + 1, j), depgraph::NodeKind::client, id(t + 1, j), "p");
                g.connect(from, to, 80, {.connections = 1}, false);
            }
        }
    }
    return g;
}

void call(depgraph::Graph& g, const std::string& from, const std::string& to) {
    g.connect(*g.find(from), *g.find(to), 81, {.connections = 1}, false);
}

}  // namespace

TEST_CASE("dot is chosen while few edges lie on cycles, however many edges the graph has") {
    auto g = layered(15, 5);  // 14 * 25 = 350 edges
    REQUIRE(g.edges.size() == 350);
    CHECK(depgraph::choose_layout(g) == "dot");
    call(g, "h1-0/p", "h0-0/p");  // one cycle of 2 edges
    call(g, "h3-0/p", "h3-0/p");  // a self-loop, on no cycle that matters to dot
    CHECK(depgraph::choose_layout(g) == "dot");
    call(g, "h14-0/p", "h0-0/p");  // now every edge from h0-0 to h14-0 lies on a cycle, far more than 150
    CHECK(depgraph::choose_layout(g) == "sfdp");
    CHECK(depgraph::choose_layout(layered(101, 5)) == "dot");    // 2,500 edges, none on a cycle
    CHECK(depgraph::choose_layout(layered(102, 5)) == "sfdp");   // 2,525: too many for dot, cycles or not

    // a chain of 20,000 nodes closed into one cycle: walked without recursion
    depgraph::Graph ring;
    for (int i = 0; i < 20000; i++) {
        auto from = ring.node("n" + std::to_string(i), depgraph::NodeKind::client, "n" + std::to_string(i), "");
        auto to = ring.node("n" + std::to_string((i + 1) % 20000), depgraph::NodeKind::client,
                            "n" + std::to_string((i + 1) % 20000), "");
        ring.connect(from, to, 80, {.connections = 1}, false);
    }
    CHECK(depgraph::choose_layout(ring) == "sfdp");
}

TEST_CASE("an external IPv6 service is written in brackets in its edge's tooltip") {
    TempDir dir;
    {
        HostDb client(dir.file("c-01.db"), "c-01");
        client.address("2001:db8::1", kT0, kT0 + 600);
        client.bucket(client.edge("out", "app", "2001:db8::1", "2001:db8::9", 443), kT0, {.connects = 3});
    }
    auto r = run_depgraph(render_args({dir.file("c-01.db")}, {"-o", "-", "--format", "svg"}));
    REQUIRE(r.exit_code == 0);
    CHECK(parse_svg(r.out).has_tooltip("c-01/app -> [2001:db8::9]:443, 3 connections, 0 failed"));
}

// node-1's client calls pod/app, which calls node-1's sidecar back. Boxed, node-1 is one node to dot, on a
// cycle with pod/app: dot put them on one rank ("trouble in init_rank") and lost edges. web-01's box (nginx
// calls app, both in it) is on no cycle and stays.
TEST_CASE("a host on a cycle with another node is not boxed; one that is not, is") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    {
        HostDb node(dir.file("node-1.db"), "node-1");
        node.address("198.18.9.1", kT0, kT0 + 600);
        HostDb pod(dir.file("pod.db"), "pod");
        pod.address("198.18.9.2", kT0, kT0 + 600);
        node.bucket(node.edge("out", "client", "198.18.9.1", "198.18.9.2", 8080), kT0, {.connects = 4});
        pod.bucket(pod.edge("in", "app", "198.18.9.2", "198.18.9.1", 8080), kT0, {.accepts = 4});
        pod.bucket(pod.edge("out", "app", "198.18.9.2", "198.18.9.1", 9000), kT0, {.connects = 2});
        node.bucket(node.edge("in", "sidecar", "198.18.9.1", "198.18.9.2", 9000), kT0, {.accepts = 2});
    }
    dbs.push_back(dir.file("node-1.db"));
    dbs.push_back(dir.file("pod.db"));
    auto r = run_depgraph(render_args(dbs, {"-o", "-", "--format", "svg", "--layout", "dot"}));
    REQUIRE(r.exit_code == 0);
    auto svg = parse_svg(r.out);
    CHECK(svg.has_text("web-01"));  // the box's label
    CHECK_FALSE(svg.has_text("node-1"));
    CHECK(svg.has_text("node-1/client"));
    CHECK(svg.has_text("node-1/sidecar"));
    CHECK(svg.has_tooltip("node-1/client -> pod/app:8080, 4 connections, 0 failed"));
    CHECK(svg.has_tooltip("pod/app -> node-1/sidecar:9000, 2 connections, 0 failed"));
}

TEST_CASE("a render of more nodes than a picture shows says what draws fewer; a small one says nothing") {
    TempDir dir;
    {
        HostDb scanner(dir.file("scan.db"), "scan-01");
        for (int i = 0; i < 300; i++) {
            std::string addr = "198.19." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
            scanner.bucket(scanner.edge("out", "scanner", "198.18.0.1", addr, 443), kT0, {.connects = 1});
        }
    }
    auto big = run_depgraph(render_args({dir.file("scan.db")}, {"-o", dir.file("scan.dot")}));
    REQUIRE(big.exit_code == 0);
    CHECK(big.err ==
          "depgraph: note: 301 nodes are more than a picture shows legibly; --group-by role draws one node per role\n");
    auto json = run_depgraph(render_args({dir.file("scan.db")}, {"-o", dir.file("scan.json")}));
    REQUIRE(json.exit_code == 0);
    CHECK(json.err.empty());
    auto small = run_depgraph(render_args(write_small_fleet(dir), {"-o", dir.file("small.dot")}));
    REQUIRE(small.exit_code == 0);
    CHECK(small.err.empty());
}

// c-01 tries s-01:5433 where nothing listens (refused, 3 times) and uses s-01's postgres on 5432: 5433 is no
// service of s-01, and the drawing says so instead of drawing one.
TEST_CASE("render: a port that never answered is drawn apart from the ports a node serves") {
    TempDir dir;
    std::vector<std::string> dbs{dir.file("c-01.db"), dir.file("s-01.db")};
    {
        HostDb client(dbs[0], "c-01");
        client.address("198.18.8.1", kT0, kT0 + 3600);
        client.bucket(client.edge("out", "app", "198.18.8.1", "198.18.8.2", 5432), kT0, {.connects = 4});
        client.bucket(client.edge("out", "app", "198.18.8.1", "198.18.8.2", 5433), kT0, {.failed = 3, .refused = 3});
        // A connection made before the window that closed in it: no attempt, and no failure either.
        client.bucket(client.edge("out", "app", "198.18.8.1", "198.18.8.2", 6432), kT0, {.closes = 1});
        HostDb server(dbs[1], "s-01");
        server.address("198.18.8.2", kT0, kT0 + 3600);
        server.bucket(server.edge("in", "postgres", "198.18.8.2", "198.18.8.1", 5432), kT0, {.accepts = 4});
        server.bucket(server.edge("in", "pgbouncer", "198.18.8.2", "198.18.8.1", 6432), kT0, {.closes = 1});
    }
    auto by_process = run_depgraph(render_args(dbs, {"-o", "-", "--format", "svg"}));
    INFO(by_process.err);
    REQUIRE(by_process.exit_code == 0);
    auto svg = parse_svg(by_process.out);
    const auto& nobody = svg.find("node", "s-01/(unknown)");
    CHECK(nobody.texts == std::vector<std::string>{"(unknown)", ":5433 no answer"});  // in s-01's box
    CHECK(nobody.attribute("fill") + " " + nobody.attribute("stroke") + " " + nobody.attribute("stroke-dasharray") ==
          "mistyrose red 5,2");
    CHECK(svg.find("node", "s-01/postgres").texts == std::vector<std::string>{"postgres", ":5432"});
    CHECK(svg.find("node", "s-01/postgres").attribute("fill") == "lightblue");
    CHECK(svg.find("node", "s-01/pgbouncer").texts == std::vector<std::string>{"pgbouncer", ":6432"});
    CHECK(svg.find("node", "s-01/pgbouncer").attribute("fill") == "lightblue");

    auto by_host = run_depgraph(render_args(dbs, {"-o", "-", "--format", "svg", "--group-by", "host"}));
    REQUIRE(by_host.exit_code == 0);
    auto by_host_svg = parse_svg(by_host.out);
    const auto& host = by_host_svg.find("node", "s-01");
    CHECK(host.texts == std::vector<std::string>{"s-01", ":5432 :6432", ":5433 no answer"});
    CHECK(host.attribute("fill") == "lightblue");  // it serves 5432
}
