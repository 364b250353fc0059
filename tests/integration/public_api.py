"""Prints the functions that the public headers declare, one per line.

Usage: python3 public_api.py INCLUDE_DIR   (the folder that holds ddts/)

An independent oracle for test_install.sh: clang parses <ddts/ddts.h> and
every non-static function declared in a file under ddts/ is listed, whatever
the declaration looks like. test_install.sh compares the list with what
libddts.so exports (nm -D), so a declaration without DDTS_API, or an export
that no header declares, fails the test.
"""
import json
import subprocess
import sys

out = subprocess.run(['clang', '-x', 'c', '-std=c11', '-fsyntax-only', '-Xclang', '-ast-dump=json',
                      '-I', sys.argv[1], '-'], input='#include <ddts/ddts.h>\n',
                     capture_output=True, text=True, check=True).stdout
names = set()
current_file = [None]


def walk(node, top):
    # clang prints a location's file only when it differs from the previous
    # location printed, so the file is tracked in document order.
    locs = []
    if 'loc' in node:
        locs.append(node['loc'])
    if 'range' in node:
        locs += [node['range'].get('begin', {}), node['range'].get('end', {})]
    for loc in locs:
        for part in (loc, loc.get('spellingLoc', {}), loc.get('expansionLoc', {})):
            if 'file' in part:
                current_file[0] = part['file']
    if (node.get('kind') == 'FunctionDecl' and top and not node.get('isImplicit')
            and node.get('storageClass') != 'static' and current_file[0]
            and '/ddts/' in current_file[0]):
        names.add(node['name'])
    for child in node.get('inner', []):
        walk(child, top and node.get('kind') in ('TranslationUnitDecl', 'LinkageSpecDecl'))


walk(json.loads(out), True)
print('\n'.join(sorted(names)))
