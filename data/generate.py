#!/usr/bin/env python3
"""Generates the recipient-location data compiled into src/domain/recipient.rs.

Sources (Apache License 2.0, The Libphonenumber Authors), repository
google/libphonenumber at commit SOURCE_COMMIT below:
  - resources/timezones/map_data.txt   number prefix -> IANA time zones
  - resources/geocoding/en/1.txt       +1 number prefix -> place name (English)
  - resources/PhoneNumberMetadata.xml  the list of country calling codes

Outputs (tab-separated, '#' comments):
  - data/nanp_area_codes.tsv  1NPA prefix, US state/DC/territory code (empty
    outside the US), zones joined by ','. Zones are the union of every zone
    listed under that area code, at any prefix length (an area code split
    between two zones lists both).
  - data/country_zones.tsv    key, zones. Keys: a country calling code (every
    zone listed under any prefix of that code), plus "US" and "CA": the union
    of the zones of the area codes of US states/DC and of Canada, used for an
    unknown +1 area code.

Usage: python3 data/generate.py <path to a libphonenumber git directory> [commit]
"""
import collections
import re
import subprocess
import sys

SOURCE_COMMIT = "f7e3e88c92b905c8d6edb81f336dbe25edc05b52"

US_STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS",
    "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA",
    "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO", "Montana": "MT",
    "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM",
    "New York": "NY", "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC",
    "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT",
    "Virginia": "VA", "Washington": "WA", "Washington State": "WA", "West Virginia": "WV",
    "Wisconsin": "WI", "Wyoming": "WY", "Washington D.C.": "DC",
}
CANADA = {
    "Ontario": "ON", "Quebec": "QC", "British Columbia": "BC", "British Colombia": "BC", "Alberta": "AB",
    "Saskatchewan": "SK", "Manitoba": "MB", "Nova Scotia/Prince Edward Island": "NS",
    "Newfoundland and Labrador": "NL", "New Brunswick": "NB", "Northwest Territories/Nunavut/Yukon": "NT",
}
US_CODES = set(US_STATES.values())
CA_CODES = set(CANADA.values()) | {"PE", "NU", "YT"}
# US territories in the NANP have their own region in libphonenumber, not a
# geocoding name; their area codes are fixed by the NANP administrator.
TERRITORIES = {"787": "PR", "939": "PR", "340": "VI", "671": "GU", "670": "MP", "684": "AS"}


def show(repo, commit, path):
    return subprocess.run(
        ["git", "--git-dir", repo, "show", f"{commit}:{path}"], check=True, capture_output=True, text=True
    ).stdout


def entries(text):
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        prefix, value = line.split("|", 1)
        yield prefix, value


def place_code(name):
    """Two-letter code of a geocoding name: a state/province name, or 'City, XX'."""
    if name in US_STATES:
        return US_STATES[name]
    if name in CANADA:
        return CANADA[name]
    match = re.search(r", ([A-Z]{2})$", name)
    return match.group(1) if match else None


def main():
    repo = sys.argv[1]
    commit = sys.argv[2] if len(sys.argv) > 2 else SOURCE_COMMIT
    zones_text = show(repo, commit, "resources/timezones/map_data.txt")
    geo_text = show(repo, commit, "resources/geocoding/en/1.txt")
    meta_text = show(repo, commit, "resources/PhoneNumberMetadata.xml")

    calling_codes = set(re.findall(r'countryCode="([0-9]+)"', meta_text))

    npa_zones = collections.defaultdict(set)
    country_zones = collections.defaultdict(set)
    for prefix, value in entries(zones_text):
        zones = set(value.split("&"))
        if prefix == "1":
            country_zones["1"] |= zones
        elif prefix.startswith("1"):
            if len(prefix) < 4:
                raise SystemExit(f"unexpected short +1 prefix {prefix}")
            npa_zones[prefix[1:4]] |= zones
        else:
            codes = [c for c in calling_codes if prefix.startswith(c)]
            if len(codes) != 1:
                raise SystemExit(f"prefix {prefix} matches calling codes {codes}")
            country_zones[codes[0]] |= zones

    votes = collections.defaultdict(collections.Counter)
    for prefix, name in entries(geo_text):
        if len(prefix) >= 4:
            code = place_code(name)
            if code:
                votes[prefix[1:4]][code] += 1

    rows = []
    for npa in sorted(npa_zones):
        if npa in TERRITORIES:
            state, country = TERRITORIES[npa], None
        elif votes[npa]:
            code = votes[npa].most_common(1)[0][0]
            if code in US_CODES:
                state, country = code, "US"
            elif code in CA_CODES:
                state, country = "", "CA"
            else:
                raise SystemExit(f"area code {npa}: unknown place code {code}")
        else:
            state, country = "", None  # another NANP country (Caribbean, Bermuda)
        if country:
            country_zones[country] |= npa_zones[npa]
        rows.append((npa, state, ",".join(sorted(npa_zones[npa]))))

    header = (
        f"# Generated by data/generate.py from google/libphonenumber at commit {commit}\n"
        "# (resources/timezones/map_data.txt, resources/geocoding/en/1.txt; Apache License 2.0,\n"
        "# The Libphonenumber Authors). Do not edit by hand.\n"
    )
    with open("data/nanp_area_codes.tsv", "w") as out:
        out.write(header)
        out.write("# area code\tUS state/DC/territory (empty outside the US)\tzones\n")
        for row in rows:
            out.write("\t".join(row) + "\n")

    def key_order(key):
        return (0, int(key)) if key.isdigit() else (1, key)

    with open("data/country_zones.tsv", "w") as out:
        out.write(header)
        out.write("# calling code, or US/CA (the union over their +1 area codes)\tzones\n")
        for key in sorted(country_zones, key=key_order):
            out.write(f"{key}\t{','.join(sorted(country_zones[key]))}\n")


if __name__ == "__main__":
    main()
