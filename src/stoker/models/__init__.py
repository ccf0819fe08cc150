"""stoker.models"""
