// Graphviz's SVG parsed as XML: its texts, and each drawn node and edge with
// its tooltip and the look of its shape.
#pragma once

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace depgraph::fixture {

// A node or edge as drawn: Graphviz's <g class="node|edge">.
struct Drawn {
    std::string kind;     // "node" or "edge"
    std::string tooltip;  // the xlink:title of the link Graphviz wraps it in
    // The attributes of its first shape (path, polygon or ellipse): fill, stroke, stroke-width, stroke-dasharray,
    // stroke-opacity.
    std::map<std::string, std::string> shape;
    std::vector<std::string> texts;  // its label's lines
    std::string text_fill;           // the colour of its label's first line; empty: black
    std::string attribute(const std::string& name) const {
        auto it = shape.find(name);
        return it == shape.end() ? "" : it->second;
    }
};

struct Svg {
    std::vector<std::string> texts;
    std::vector<std::string> elements;
    std::vector<std::string> tooltips;
    std::vector<Drawn> drawn;
    bool has_text(const std::string& t) const { return std::find(texts.begin(), texts.end(), t) != texts.end(); }
    bool has_tooltip(const std::string& t) const {
        return std::find(tooltips.begin(), tooltips.end(), t) != tooltips.end();
    }
    // The node or edge drawn with this tooltip; fails the test if there is none.
    const Drawn& find(const std::string& kind, const std::string& tooltip) const {
        auto it = std::find_if(drawn.begin(), drawn.end(),
                               [&](const Drawn& d) { return d.kind == kind && d.tooltip == tooltip; });
        INFO(kind << " " << tooltip);
        REQUIRE(it != drawn.end());
        return *it;
    }
    // The tooltips of every node drawn, sorted.
    std::vector<std::string> nodes() const {
        std::vector<std::string> names;
        for (const auto& d : drawn) {
            if (d.kind == "node") names.push_back(d.tooltip);
        }
        std::sort(names.begin(), names.end());
        return names;
    }
};

namespace svg_detail {

inline std::string property(xmlNode* node, const char* name) {
    std::unique_ptr<xmlChar, decltype(xmlFree)> value(xmlGetProp(node, BAD_CAST name), xmlFree);
    return value ? reinterpret_cast<const char*>(value.get()) : "";
}

constexpr size_t kOutside = SIZE_MAX;

// `within`: the index in svg.drawn of the node or edge being walked, or kOutside.
inline void collect(xmlNode* node, Svg& svg, size_t within) {
    for (; node; node = node->next) {
        size_t here = within;
        if (node->type == XML_ELEMENT_NODE) {
            std::string name = reinterpret_cast<const char*>(node->name);
            svg.elements.push_back(name);
            if (name == "text") {
                std::unique_ptr<xmlChar, decltype(xmlFree)> content(xmlNodeGetContent(node), xmlFree);
                svg.texts.emplace_back(reinterpret_cast<const char*>(content.get()));
                if (within != kOutside) {
                    auto& drawn = svg.drawn[within];
                    if (drawn.texts.empty()) drawn.text_fill = property(node, "fill");
                    drawn.texts.push_back(svg.texts.back());
                }
            } else if (name == "a" && xmlHasProp(node, BAD_CAST "title")) {
                svg.tooltips.push_back(property(node, "title"));
                if (within != kOutside && svg.drawn[within].tooltip.empty()) svg.drawn[within].tooltip = svg.tooltips.back();
            } else if (name == "g" && (property(node, "class") == "node" || property(node, "class") == "edge")) {
                here = svg.drawn.size();
                svg.drawn.push_back({property(node, "class"), "", {}, {}, ""});
            } else if (within != kOutside && svg.drawn[within].shape.empty() &&
                       (name == "path" || name == "polygon" || name == "ellipse")) {
                for (const char* attribute : {"fill", "stroke", "stroke-width", "stroke-dasharray", "stroke-opacity"}) {
                    if (xmlHasProp(node, BAD_CAST attribute)) svg.drawn[within].shape[attribute] = property(node, attribute);
                }
            }
        }
        collect(node->children, svg, here);
    }
}

}  // namespace svg_detail

inline Svg parse_svg(const std::string& text) {
    // no network, no entity expansion: the SVG's DOCTYPE names a remote DTD
    std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)> doc(
        xmlReadMemory(text.data(), static_cast<int>(text.size()), "graph.svg", nullptr, XML_PARSE_NONET), &xmlFreeDoc);
    REQUIRE(doc);
    Svg svg;
    svg_detail::collect(xmlDocGetRootElement(doc.get()), svg, svg_detail::kOutside);
    return svg;
}

}  // namespace depgraph::fixture
