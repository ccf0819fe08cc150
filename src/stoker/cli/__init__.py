"""stoker.cli"""
