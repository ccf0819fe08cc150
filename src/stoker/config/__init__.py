"""stoker.config"""
